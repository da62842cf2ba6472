"""What an attention approximation keeps: a research design's (:class:`AttentionApprox`) or an
algorithm's (:class:`ApproxAlgorithm`), as
a spec with no dependence on the operator graph, so :class:`~hwsim.workload.ops.Attention`
can carry one; :mod:`hwsim.workload.pruning` applies it to a workload."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from hwsim.errors import ConfigError

#: Selection hardware: what picks the kept tokens, heads or keys.
SELECTIONS = ("none", "topk", "a3", "elsa", "sanger")

Fractions = float | tuple[float, ...]


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fraction_problems(name: str, value: Any, cascade: bool) -> list[str]:
    """Why ``value`` is not a fraction in (0, 1] or a tuple of them (non-increasing when
    ``cascade``: a token or head pruned in one layer stays pruned in the next)."""
    values = value if isinstance(value, tuple | list) else (value,)
    if not values:
        return [f"{name}: needs at least one fraction"]
    bad = [v for v in values if not _is_real(v) or not 0.0 < v <= 1.0]
    if bad:
        return [f"{name}: fractions kept must lie in (0, 1], got {bad[0]!r}"]
    if cascade and any(b > a for a, b in zip(values, values[1:], strict=False)):
        return [f"{name}: cascade pruning keeps a pruned token or head pruned, so the per-layer "
                f"fractions must not rise, got {list(values)}"]
    return []


@dataclass(frozen=True)
class AttentionApprox:
    """What an approximate-attention design keeps, and what selects it.

    Parameters
    ----------
    token_keep, head_keep : float or tuple of float
        Fraction of tokens (keys, and queries when a pass has many) and of heads kept,
        in (0, 1]; a tuple gives one per layer (cascade: non-increasing).
    score_keep : float
        Fraction of the kept keys each query scores exactly and attends to (A3, ELSA,
        Sanger candidate density), in (0, 1].
    msb_bits, lsb_bits : int
        Progressive quantization: K and V stored as ``msb_bits + lsb_bits`` bits, the MSBs
        always fetched; 0 and 0 turn it off.
    refetch_fraction : float
        Share of the attention rows whose LSBs are fetched and recomputed, in [0, 1].
    selection : {"none", "topk", "a3", "elsa", "sanger"}
        The selection hardware whose own work is costed.
    hash_bits : int
        ELSA: bits of each key's and query's hash.
    search_fraction : float
        A3: share of the keys its greedy candidate search walks, in (0, 1].
    predict_bits : int
        Sanger: bits of the score prediction.
    selection_overlapped : bool
        The selection unit is its own pipeline stage beside the matrix units (the
        research designs' top-k engine, candidate-selection module, hash unit, mask
        array), so its time hides under the kept work's (the longer of the two counts);
        ``False`` (default): the selection runs before the kept work, as separate kernels
        do on a GPU, and the times add.
    """

    token_keep: Fractions = 1.0
    head_keep: Fractions = 1.0
    score_keep: float = 1.0
    msb_bits: int = 0
    lsb_bits: int = 0
    refetch_fraction: float = 0.0
    selection: str = "none"
    hash_bits: int = 64
    search_fraction: float = 0.5
    predict_bits: int = 4
    selection_overlapped: bool = False

    def __post_init__(self) -> None:
        for name in ("token_keep", "head_keep"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        problems = self.problems()
        if problems:
            raise ConfigError([f"attention_approx: {p}" for p in problems])

    def problems(self) -> list[str]:
        """Everything wrong with these settings (empty if nothing)."""
        out = _fraction_problems("token_keep", self.token_keep, cascade=True)
        out += _fraction_problems("head_keep", self.head_keep, cascade=True)
        out += _fraction_problems("score_keep", self.score_keep, cascade=False)
        out += _fraction_problems("search_fraction", self.search_fraction, cascade=False)
        if not _is_real(self.refetch_fraction) or not 0.0 <= self.refetch_fraction <= 1.0:
            out.append(f"refetch_fraction: must lie in [0, 1], got {self.refetch_fraction!r}")
        for name, low in (("msb_bits", 0), ("lsb_bits", 0), ("hash_bits", 1), ("predict_bits", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 64:
                out.append(f"{name}: must be an integer in [{low}, 64], got {value!r}")
        if not isinstance(self.selection_overlapped, bool):
            out.append(f"selection_overlapped: expected true or false, got {self.selection_overlapped!r}")
        if self.lsb_bits and not self.msb_bits:
            out.append("lsb_bits: progressive quantization needs msb_bits > 0 too")
        if self.selection not in SELECTIONS:
            out.append(f"selection: unknown {self.selection!r}; expected one of {', '.join(SELECTIONS)}")
        elif self.selection == "none" and not self.is_dense and (self.prunes_tokens or self.score_keep < 1):
            out.append("selection: pruning tokens, heads or keys needs selection hardware "
                       "(topk, a3, elsa or sanger), not 'none'")
        return out

    @property
    def prunes_tokens(self) -> bool:
        keeps = [*_as_tuple(self.token_keep), *_as_tuple(self.head_keep)]
        return min(keeps) < 1.0

    @property
    def is_dense(self) -> bool:
        """Nothing is pruned, filtered or quantized: dense attention exactly."""
        return not self.prunes_tokens and self.score_keep == 1.0 and self.msb_bits == 0

    def n_layers_given(self) -> int | None:
        """Layers the per-layer tuples are for (``None`` if every fraction is a scalar)."""
        lengths = {len(v) for v in (self.token_keep, self.head_keep) if isinstance(v, tuple)}
        if len(lengths) > 1:
            raise ConfigError([f"attention_approx: token_keep and head_keep give different numbers of "
                               f"layers ({sorted(lengths)})"])
        return lengths.pop() if lengths else None

    def at_layer(self, index: int) -> AttentionApprox:
        """The scalar settings of layer ``index`` (0-based)."""
        return replace(self, token_keep=_pick(self.token_keep, index), head_keep=_pick(self.head_keep, index))

    def label(self) -> str:
        """A short description for results and cost details."""
        parts = [self.selection]
        token, head = _as_tuple(self.token_keep), _as_tuple(self.head_keep)
        if min(token) < 1:
            parts.append(f"tokens {sum(token) / len(token):.3g}")
        if min(head) < 1:
            parts.append(f"heads {sum(head) / len(head):.3g}")
        if self.score_keep < 1:
            parts.append(f"keys {self.score_keep:.3g}")
        if self.msb_bits:
            parts.append(f"pq {self.msb_bits}+{self.lsb_bits} bits, refetch {self.refetch_fraction:.3g}")
        return ", ".join(parts)


def _as_tuple(value: Fractions) -> tuple[float, ...]:
    return value if isinstance(value, tuple) else (value,)


def _pick(value: Fractions, index: int) -> float:
    return value[index] if isinstance(value, tuple) else value


def cascade_schedule(mean_keep: float, n_layers: int, first_keep: float = 1.0) -> tuple[float, ...]:
    """Per-layer fractions kept, falling geometrically from ``first_keep`` (layer 0) so
    that their mean over the layers is ``mean_keep``: the shape of a cascade whose every
    layer prunes the same share of what is left.

    Raises
    ------
    ConfigError
        If the mean is outside (0, first_keep] or the layer count is not positive.
    """
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ConfigError([f"cascade_schedule: n_layers: must be a positive integer, got {n_layers!r}"])
    if not (_is_real(mean_keep) and _is_real(first_keep) and 0 < mean_keep <= first_keep <= 1):
        raise ConfigError([f"cascade_schedule: need 0 < mean_keep <= first_keep <= 1, got "
                           f"{mean_keep!r} and {first_keep!r}"])
    target = mean_keep / first_keep
    lo, hi = 0.0, 1.0  # the per-layer ratio r: mean of r**i over the layers rises with r
    for _ in range(100):
        r = (lo + hi) / 2
        if sum(r**i for i in range(n_layers)) / n_layers < target:
            lo = r
        else:
            hi = r
    r = (lo + hi) / 2
    return tuple(max(first_keep * r**i, 1e-6) for i in range(n_layers))


def parse_approx(value: Any, source: str = "attention_approx") -> AttentionApprox:
    """An :class:`AttentionApprox` from itself or a mapping of its fields.

    Raises
    ------
    ConfigError
        Naming ``source`` and the field, for unknown fields or bad values.
    """
    if isinstance(value, AttentionApprox):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError([f"{source}: expected a mapping of approximation settings, got {value!r}"])
    known = {f.name for f in fields(AttentionApprox)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError([f"{source}: {k}: unknown setting; expected one of {', '.join(sorted(known))}"
                           for k in unknown])
    try:
        return AttentionApprox(**value)
    except ConfigError as exc:
        raise ConfigError([p.replace("attention_approx", source, 1) for p in exc.problems]) from None


#: Each kind's parameters (all positive integers) and their defaults (None: required).
KINDS: dict[str, dict[str, int | None]] = {
    "topk": {"k": None},
    "linformer": {"rank": None},
    "performer": {"features": None},
    "reformer": {"buckets": None, "rounds": 1},
}


@dataclass(frozen=True)
class ApproxAlgorithm:
    """One approximate-attention algorithm and its parameter(s) (module docstring).

    Parameters
    ----------
    kind : {"topk", "linformer", "performer", "reformer"}
    k : int
        top-k: keys kept per query.
    rank : int
        Linformer: rows of the projected keys and values.
    features : int
        Performer: random features per query and key.
    buckets, rounds : int
        Reformer: LSH buckets per round (even: a random rotation to ``buckets / 2``
        dimensions and its negation) and hashing rounds.
    """

    kind: str
    k: int = 0
    rank: int = 0
    features: int = 0
    buckets: int = 0
    rounds: int = 1

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError([f"attention_approx: {p}" for p in problems])

    def problems(self) -> list[str]:
        """Everything wrong with these settings (empty if nothing)."""
        if self.kind not in KINDS:
            return [f"kind: unknown {self.kind!r}; expected one of {', '.join(KINDS)}"]
        out = []
        for name in KINDS[self.kind]:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                out.append(f"{name}: {self.kind} needs a positive integer, got {value!r}")
        if self.kind == "reformer" and not out and self.buckets % 2:
            out.append(f"buckets: LSH by random rotation needs an even count, got {self.buckets}")
        return out

    def label(self) -> str:
        """Short description for results and cost details."""
        params = ", ".join(f"{n} {getattr(self, n)}" for n in KINDS[self.kind])
        return f"{self.kind} ({params})"


def parse_algorithm(value: Any, source: str = "attention_approx") -> ApproxAlgorithm:
    """An :class:`ApproxAlgorithm` from a mapping such as ``{"kind": "linformer",
    "rank": 256}`` (or an ApproxAlgorithm); anything else is refused, naming ``source``."""
    if isinstance(value, ApproxAlgorithm):
        return value
    if not isinstance(value, dict) or "kind" not in value:
        raise ConfigError([f"{source}: expected a mapping with a 'kind' "
                           f"({', '.join(KINDS)}) and its parameters, got {value!r}"])
    kind = value["kind"]
    if kind not in KINDS:
        raise ConfigError([f"{source}.kind: unknown {kind!r}; expected one of {', '.join(KINDS)}"])
    params = KINDS[kind]
    unknown = sorted(set(value) - {"kind", *params})
    missing = [n for n, default in params.items() if default is None and n not in value]
    problems = [f"{source}.{n}: not a {kind} parameter (it takes {', '.join(params)})" for n in unknown]
    problems += [f"{source}.{n}: {kind} needs it" for n in missing]
    if problems:
        raise ConfigError(problems)
    fields: dict[str, Any] = {n: value.get(n, default) for n, default in params.items()}
    try:
        return ApproxAlgorithm(kind, **fields)
    except ConfigError as exc:
        raise ConfigError([p.replace("attention_approx", source, 1) for p in exc.problems]) from None
