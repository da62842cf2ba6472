"""Deterministic fuzzing of everything a user hands hwsim: the harness.

A *family* turns a seeded :class:`random.Random` into :class:`Case` objects: a label, the
source its errors must name, a thunk that loads the mutated input (raising, or returning
what was built), a check that simulates what was built, and whether the mutation made the
input impossible. :func:`judge` runs a case and sorts it into one outcome:

``ok``
    built, and simulated to finite, non-negative totals and per-op values;
``refused``
    a :class:`~hwsim.errors.HwsimError` at load whose every line reads
    ``source: dotted.path: problem`` (or ``source: line N: problem``);
``refused_later``
    built, then refused by a check that needs the hardware (does not fit, no such
    dtype, a plan the system cannot hold): any HwsimError but a SimulationError;
``traceback``
    any other exception (a bug);
``unnamed``
    an HwsimError at load whose message does not name the source and a path;
``impossible``
    an input the mutation made impossible (a boolean, string, NaN, infinite, negative
    or overflowing number where a number was; a duplicate key; non-UTF-8 bytes; deep
    nesting) that was accepted, or one that simulated to a non-physical value or was
    stopped by a SimulationError.

The last three are failures. :func:`file_family` and :func:`kwargs_family` build a
family from files or from a function's keyword arguments; the families themselves are
in ``tests/fuzz_families.py``.
"""

from __future__ import annotations

import atexit
import copy
import math
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import hwsim
from hwsim._yaml import _FLOAT_RE, parse_yaml
from hwsim.errors import HwsimError, SimulationError

ROOT = Path(__file__).resolve().parents[1]
FAILURES = ("traceback", "unnamed", "impossible")
INF = math.inf

_TMP = Path(tempfile.mkdtemp(prefix="hwsim-fuzz-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


def _write(name: str, raw: bytes) -> Path:
    path = _TMP / name
    path.write_bytes(raw)
    return path


class _Dumper(yaml.SafeDumper):
    """Quotes a string that hwsim's loader would read as a number (``1e9``), so a string
    put in by a mutation is still a string when read back."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "'" if _FLOAT_RE.match(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(data: Any) -> bytes:
    """YAML text of ``data`` as hwsim reads it back."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True).encode()


# Mutations ------------------------------------------------------------------------------

#: Values swapped in for any node: wrong types, booleans, strings, special floats.
ODD_VALUES: tuple[Any, ...] = (
    True, False, "yes", "no", "1e9", "", "abc", None, [], {}, [1], {"a": 1}, [[1]],
    -1, 0, 0.0, -0.0, INF, -INF, math.nan, 1e308, -1e308, 1e-300, 10**30, 2**64, 1.5, -2.5,
)


def _scaled(value: Any, rng: random.Random) -> Any:
    """A number moved: often within reason (x0.1 to x1000, where it should still load
    and must then simulate physically), sometimes to an extreme (negated, zeroed, x1e300)."""
    factor = rng.choice([0.1, 0.5, 2, 3, 10, 1e3, 1e-3, 1e6, 1e-6, -1, 0, 1e300, 1e-300])
    scaled = value * factor
    return int(scaled) if isinstance(value, int) and abs(scaled) < 2**63 else scaled


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``node`` (mapping keys and list indices), containers included."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def _typo(key: str, rng: random.Random) -> str:
    i = rng.randrange(len(key) + 1)
    return key[:i] + rng.choice("xz_") + key[i:]


def must_refuse(old: Any, new: Any) -> bool:
    """Whether no schema may accept ``new`` where ``old`` was: a boolean, a string, a
    container, a non-finite, negative or overflowing number where a number was; anything
    but a boolean where a flag was. (``None`` and 0 can be legal: no power cap, no energy.)"""
    if type(old) is bool:
        return type(new) is not bool
    if type(old) not in (int, float):
        return False
    if new is None:
        return False
    if type(new) not in (int, float):
        return True
    return not math.isfinite(new) or new < 0 or abs(new) >= 1e300


def mutate_data(data: Any, rng: random.Random) -> tuple[Any, str, bool]:
    """A mutated deep copy of ``data``, a description of the mutation, and whether the
    result must be refused (see :func:`must_refuse`; a value wrapped in a list also)."""
    data = copy.deepcopy(data)
    paths = _paths(data)
    if not paths:
        return rng.choice(ODD_VALUES), "root replaced", False
    numeric = [p for p in paths if type(_get(data, p)) in (int, float)]
    path = rng.choice(numeric if numeric and rng.random() < 0.6 else paths)
    parent, key = _get(data, path[:-1]), path[-1]
    value = parent[key]
    kind = rng.choices(["odd", "scale", "delete", "rename", "extra", "wrap", "unwrap"],
                       weights=[30, 35, 10, 7, 5, 5, 3])[0]
    refuse = False
    if kind == "scale" and type(value) in (int, float):
        parent[key] = _scaled(value, rng)
        refuse = must_refuse(value, parent[key])
    elif kind == "delete":
        del parent[key]
    elif kind == "rename" and isinstance(key, str):  # a renamed memory level can be legal
        parent[_typo(key, rng)] = parent.pop(key)
    elif kind == "extra" and isinstance(parent, dict):
        parent[_typo(str(key), rng) + "_extra"] = value
    elif kind == "wrap":
        parent[key] = [value]
        refuse = True
    elif kind == "unwrap" and isinstance(value, dict) and value:  # a range's ends as values is legal
        parent[key] = list(value.values())
    else:
        kind = "odd"
        parent[key] = rng.choice(ODD_VALUES)
        refuse = must_refuse(value, parent[key])
    where = ".".join(map(str, path))
    return data, f"{kind} at {where} = {parent.get(key) if isinstance(parent, dict) else '...'!r}", refuse


def mutate_text(text: str, rng: random.Random) -> tuple[bytes, str, bool]:
    """Byte-level damage: a duplicated key line, non-UTF-8 bytes, 3,000-deep nesting (all
    three must be refused), truncation or a stray character (either may leave valid YAML)."""
    lines = text.splitlines(keepends=True)
    keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*[\w\"'.:-]+:\s", line)]
    kind = rng.choice(["duplicate", "bytes", "nesting", "truncate", "char"])
    if kind == "duplicate" and keyed:
        i = rng.choice(keyed)
        lines.insert(i + 1, lines[i])
        return "".join(lines).encode(), f"duplicate line {i + 1}", True
    raw = text.encode()
    if kind == "bytes":
        i = rng.randrange(len(raw) + 1)
        bad = rng.choice([b"\xff", b"\xc3\x28", b"\xfe\xff", b"\x80"])
        return raw[:i] + bad + raw[i:], f"byte at {i}", True
    if kind == "nesting" and keyed:
        i = rng.choice(keyed)
        head = lines[i].split(":", 1)[0]
        lines[i] = f"{head}: {'[' * 3000}{']' * 3000}\n"
        return "".join(lines).encode(), f"nesting at line {i + 1}", True
    if kind == "truncate":
        i = rng.randrange(len(raw))
        return raw[:i], f"truncated at {i}", False
    i = rng.randrange(len(raw))
    char = rng.choice([b"{", b"[", b":", b"\t", b"&", b"*", b"!"])
    return raw[:i] + char + raw[i:], f"char at {i}", False


# Cases and outcomes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One fuzzed input: ``build()`` loads it; ``check(built)`` simulates what loaded."""

    label: str
    sources: tuple[str, ...]
    build: Callable[[], Any]
    check: Callable[[Any], None]
    must_refuse: bool = False
    """The mutation made the input impossible: building it must fail."""
    family: str = ""
    """Set by :func:`run_fuzz` to the family's name in its table."""


class Impossible(AssertionError):
    """A built input simulated to a value no run can have."""


@dataclass
class Report:
    """Outcomes of a fuzz run, counted and with the failing cases kept."""

    counts: Counter = field(default_factory=Counter)
    by_family: dict[str, Counter] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, case: Case, outcome: str, detail: str) -> None:
        self.counts[outcome] += 1
        self.by_family.setdefault(case.family, Counter())[outcome] += 1
        if outcome in FAILURES:
            self.failures.append(f"[{outcome}] {case.family}: {case.label}: {detail}")

    @property
    def n_cases(self) -> int:
        return sum(self.counts.values())


def _names_source_and_path(exc: HwsimError, sources: tuple[str, ...]) -> bool:
    lines = getattr(exc, "problems", None) or str(exc).splitlines()
    heads = "|".join(re.escape(s) for s in sources)
    pattern = re.compile(rf"^(?:{heads}): (?:line \d+|<root>|[^\s:][^\s]*?)(?:: |$)")
    return bool(lines) and all(pattern.match(str(line)) for line in lines)


def judge(case: Case) -> tuple[str, str]:
    """``(outcome, detail)`` of one case (see the module docstring)."""
    try:
        built = case.build()
    except HwsimError as exc:
        if _names_source_and_path(exc, case.sources):
            return "refused", str(exc).splitlines()[0]
        return "unnamed", str(exc)[:400]
    except Exception as exc:  # noqa: BLE001 - the point: anything else is a bug
        return "traceback", f"{type(exc).__name__}: {exc}"[:400]
    if case.must_refuse:
        return "impossible", "accepted, though the mutation made it impossible"
    try:
        case.check(built)
    except SimulationError as exc:
        return "impossible", str(exc)[:400]
    except Impossible as exc:
        return "impossible", str(exc)[:400]
    except HwsimError as exc:
        return "refused_later", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    except Exception as exc:  # noqa: BLE001
        return "traceback", f"after load: {type(exc).__name__}: {exc}"[:400]
    return "ok", ""


def run_fuzz(families: dict[str, Callable[[random.Random, int], Iterator[Case]]], n_per_family: int,
             seed: int = 0) -> Report:
    """Judge ``n_per_family`` cases of every family, each family from its own seeded stream."""
    report = Report()
    start = time.perf_counter()
    for name, family in families.items():
        rng = random.Random(f"{seed}:{name}")
        for case in family(rng, n_per_family):
            case = replace(case, family=name)
            outcome, detail = judge(case)
            report.add(case, outcome, detail)
    report.seconds = time.perf_counter() - start
    return report


# Judging what loaded: small simulations whose every number must be physical --------------

def assert_physical(result: hwsim.Result, what: str) -> None:
    """Totals and per-op frame values finite and non-negative (raises :class:`Impossible`)."""
    totals = {"latency_s": result.latency_s, "energy_j": result.energy_j, "flops": result.flops,
              **result.energy_breakdown_j, **result.bytes_by_level}
    bad = {k: v for k, v in totals.items() if not (math.isfinite(v) and v >= 0)}
    if bad or result.latency_s <= 0:
        raise Impossible(f"{what}: totals {bad or {'latency_s': result.latency_s}}")
    numbers = result.to_frame().select_dtypes("number").to_numpy(dtype=float)
    if numbers.size and not (np.isfinite(numbers).all() and (numbers >= 0).all()):
        raise Impossible(f"{what}: per-op frame holds non-finite or negative values")


# Family builders -------------------------------------------------------------------------

def file_family(pattern: str, load: Callable[[Path], Any], check: Callable[[Any], None],
                text_share: float = 0.3) -> Callable[[random.Random, int], Iterator[Case]]:
    """Mutations of every file matching ``pattern`` (relative to the checkout): data-level
    ones (dumped back as YAML) and, for ``text_share`` of them, byte-level ones."""
    files = sorted(ROOT.glob(pattern))

    def family(rng: random.Random, n: int) -> Iterator[Case]:
        for i in range(n):
            src = files[i % len(files)]
            text = src.read_text(encoding="utf-8")
            if rng.random() < text_share:
                raw, how, refuse = mutate_text(text, rng)
            else:
                data, how, refuse = mutate_data(parse_yaml(text), rng)
                if rng.random() < 0.2:  # sometimes two changes at once
                    data, second, also = mutate_data(data, rng)
                    how, refuse = f"{how} + {second}", refuse or also
                raw = dump(data)
            path = _write(f"{src.stem}-{i}{src.suffix}", raw)
            yield Case(f"{src.name}: {how}", (str(path),), lambda p=path: load(p), check, refuse)

    return family


def kwargs_family(call: Callable[..., Any], base: dict[str, Any], sources: tuple[str, ...],
                  check: Callable[[Any], None], *, alternatives: dict[str, list[Any]] | None = None,
                  no_scale: tuple[str, ...] = (), typos: bool = True
                  ) -> Callable[[random.Random, int], Iterator[Case]]:
    """Calls of ``call(**kwargs)`` with one or two keyword arguments changed or misspelt.

    ``alternatives``: other legal values of an argument (so that changed calls also run);
    ``no_scale``: arguments never scaled up (where size is run time, not a refusal);
    ``typos=False`` for a function with a fixed signature, where a misspelt keyword is
    Python's own ``TypeError`` naming it, as for any function.
    """
    legal = alternatives or {}

    def family(rng: random.Random, n: int) -> Iterator[Case]:
        for _ in range(n):
            kwargs = dict(base)
            hows, refusals = [], {}  # by keyword: a later change of one keyword replaces the earlier
            for _ in range(rng.choice([1, 1, 2])):
                key = rng.choice(list(base))
                kind = rng.choices(["odd", "scale", "legal", "typo" if typos else "odd"],
                                   weights=[40, 35, 15, 10])[0]
                value = kwargs.get(key)
                if kind == "legal" and key in legal:
                    kwargs[key] = rng.choice(legal[key])
                    refusals[key] = False
                elif kind == "scale" and type(value) in (int, float) and key not in no_scale:
                    kwargs[key] = _scaled(value, rng)
                    refusals[key] = must_refuse(base[key], kwargs[key])
                elif kind == "typo":  # an unknown keyword: refused by name
                    typo = _typo(key, rng)
                    kwargs[typo] = kwargs.pop(key, value)
                    refusals[typo] = True
                else:
                    kind = "odd"
                    kwargs[key] = rng.choice(ODD_VALUES)
                    refusals[key] = must_refuse(base[key], kwargs[key])
                hows.append(f"{kind} {key}")
            refuse = any(refusals.get(k, False) for k in kwargs)
            yield Case(f"{', '.join(hows)}: {kwargs}", sources, lambda k=kwargs: call(**k), check, refuse)

    return family


def format_report(report: Report) -> str:
    """A plain-text summary: cases, seconds, outcomes overall and per family, failures."""
    lines = [f"{report.n_cases} cases in {report.seconds:.1f} s: "
             + ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))]
    for name, counts in report.by_family.items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines += [f"  {f}" for f in report.failures[:50]]
    return "\n".join(lines)
