"""Checks of a sweep spec against its base architecture and workloads, before any work.

:func:`compile_spec` parses the expressions (derived parameters, constraints) and orders
the derived parameters; :func:`check_spec` also loads the base architecture and every
workload and tries each parameter's extreme values on them, so an unknown path, a
value that fails validation, an empty space or conflicting options are reported at once,
each line naming the file and the dotted path.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim._yaml import read_yaml
from hwsim.errors import ConfigError, HwsimError
from hwsim.sweep.capacity import CAPACITY_OPTIONS
from hwsim.sweep.expr import Expr, ExprError, parse_expr
from hwsim.sweep.spec import (
    ALL_METRICS,
    WORKLOAD_KEYS,
    WORKLOAD_PREFIX,
    SweepSpec,
    WorkloadSpec,
    spec_from_dict,
)

#: Metrics known before simulating (constraints on them reject a point without running it).
PRE_METRICS = ("area_mm2", "chip_cost_usd")
MAX_GRID_POINTS = 10_000_000


@dataclass(frozen=True)
class Constraint:
    """A constraint: ``fits`` (the workload's resident bytes fit the home memory) or a
    comparison over metrics and parameters; ``pre`` if it can be decided before simulating."""

    text: str
    expr: Expr | None
    pre: bool

    @property
    def is_fits(self) -> bool:
        """True for the ``fits`` constraint."""
        return self.expr is None


@dataclass(frozen=True)
class CompiledSpec:
    """A spec with its expressions parsed: derived parameters in evaluation order."""

    spec: SweepSpec
    derived: tuple[tuple[str, Expr], ...]
    constraints: tuple[Constraint, ...]


def _derived_order(spec: SweepSpec, problems: list[str], source: str) -> list[tuple[str, Expr]]:
    parsed: dict[str, Expr] = {}
    for path, text in spec.derived.items():
        try:
            expr = parse_expr(text)
        except ExprError as exc:
            problems.append(f"{source}: derived.{path}: {exc}")
            continue
        unknown = sorted(expr.names - set(spec.param_paths))
        if unknown:
            problems.append(f"{source}: derived.{path}: {', '.join(unknown)} is not a parameter "
                            f"(known: {', '.join(spec.param_paths)})")
            continue
        parsed[path] = expr
    order: list[tuple[str, Expr]] = []
    ready = set(spec.parameters)
    pending = dict(parsed)
    while pending:
        now = [p for p, e in pending.items() if e.names <= ready]
        if not now:
            problems.append(f"{source}: derived: {', '.join(pending)} depend on each other in a cycle")
            break
        for path in now:
            order.append((path, pending.pop(path)))
            ready.add(path)
    return order


def _constraints(spec: SweepSpec, problems: list[str], source: str) -> list[Constraint]:
    out = []
    known = set(ALL_METRICS) | set(spec.param_paths)
    for i, text in enumerate(spec.constraints):
        if text.strip() == "fits":
            out.append(Constraint("fits", None, pre=False))
            continue
        try:
            expr = parse_expr(text)
        except ExprError as exc:
            problems.append(f"{source}: constraints[{i}]: {exc}")
            continue
        unknown = sorted(expr.names - known)
        if not expr.is_comparison:
            problems.append(f"{source}: constraints[{i}]: {text!r} is not a comparison "
                            "(write e.g. 'area_mm2 <= 400', or 'fits')")
        elif unknown:
            problems.append(f"{source}: constraints[{i}]: unknown name {', '.join(unknown)} "
                            f"(metrics: {', '.join(ALL_METRICS)}; or a parameter path)")
        else:
            pre = expr.names <= set(PRE_METRICS) | set(spec.param_paths)
            out.append(Constraint(expr.text, expr, pre))
    return out


def compile_spec(spec: SweepSpec, source: str = "<spec>") -> CompiledSpec:
    """Parse the spec's expressions.

    Raises
    ------
    ConfigError
        For a malformed expression, an unknown name or a cycle among derived parameters.
    """
    problems: list[str] = []
    derived = _derived_order(spec, problems, source)
    constraints = _constraints(spec, problems, source)
    if problems:
        raise ConfigError(problems)
    return CompiledSpec(spec, tuple(derived), tuple(constraints))


def _leaf_paths(data: Any, prefix: str = "") -> list[str]:
    if not isinstance(data, dict):
        return [prefix]
    out = []
    for key, value in data.items():
        out += _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def _tail(line: str) -> str:
    """``'chip (overridden): a.b: msg'`` -> ``'msg'`` (the path is said by the caller)."""
    parts = line.split(": ", 2)
    return parts[-1]


def _check_arch_path(chip: Any, leaves: list[str], where: str, path: str, values: list[Any],
                     value_where: list[str], problems: list[str], source: str) -> None:
    from hwsim.arch import with_overrides

    if path not in leaves:
        close = difflib.get_close_matches(path, leaves, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        problems.append(f"{source}: {where}: unknown architecture field '{path}' of {chip.name}{hint}")
        return
    for value, vwhere in zip(values, value_where, strict=True):
        try:
            with_overrides(chip, {path: value})
        except ConfigError as exc:
            problems += [f"{source}: {vwhere}: {value!r} is rejected: {_tail(p)}" for p in exc.problems]


def probe_workload(w: WorkloadSpec, extra: dict[str, Any] | None = None) -> Any:
    """Lower ``w`` with ``extra`` options to check them; a capacity workload is checked
    as the prefill of one of its requests (its model and options, not its serving)."""
    from hwsim.api import load_workload

    options = {**w.options(), **(extra or {})}
    if w.capacity is not None:
        return load_workload(w.model, phase="prefill", batch=1, prompt_len=w.capacity.prompt_len, **options)
    return load_workload(w.model, phase=w.phase, **options)


def _check_system(name: str, where: str) -> list[str]:
    """Problems loading a capacity workload's system (none if it loads)."""
    from hwsim.arch.system import load_system

    try:
        system = load_system(name)
    except HwsimError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return [f"{where}: {p}" for p in problems]
    if system.pools:
        return [f"{where}: {name} is a mixed system (prefill and decode pools of their own chips); "
                "a capacity sweep puts the point's chip in every slot, so it takes a system of one chip kind"]
    return []


def _check_workload_path(spec: SweepSpec, where: str, key: str, values: list[Any],
                         value_where: list[str], problems: list[str], source: str) -> None:
    if key not in WORKLOAD_KEYS:
        problems.append(f"{source}: {where}: unknown workload option '{key}' "
                        f"(known: {', '.join(WORKLOAD_KEYS)})")
        return
    for i, w in enumerate(spec.workloads):
        if getattr(w, key) is not None:
            problems.append(f"{source}: {where}: conflicts with workloads[{i}].{key} = {getattr(w, key)!r} "
                            "(a swept option cannot also be fixed)")
            return
        if w.is_capacity and key not in CAPACITY_OPTIONS:
            problems.append(f"{source}: {where}: '{key}' is not an option of capacity workload "
                            f"workloads[{i}] (its request shape is in its capacity block; "
                            f"options: {', '.join(CAPACITY_OPTIONS)})")
            return
    for value, vwhere in zip(values, value_where, strict=True):
        for w in spec.workloads:
            try:
                probe_workload(w, {key: value})
            except (HwsimError, TypeError, ValueError) as exc:
                problems.append(f"{source}: {vwhere}: {value!r} is rejected for {w.name}: "
                                f"{str(exc).splitlines()[0]}")
                break


def _check_paths(spec: SweepSpec, chip: Any, problems: list[str], source: str) -> None:
    leaves = _leaf_paths(chip.model_dump())
    for path in spec.param_paths:
        if path in spec.parameters:
            p = spec.parameters[path]
            where = f"parameters.{path}"
            values = p.bounds()
            suffixes = [f"values[{i}]" for i in range(len(values))] if not p.is_range else ["low", "high"]
            value_where = [f"{where}.{s}" for s in suffixes]
        else:
            where, values, value_where = f"derived.{path}", [], []
        if path.startswith(WORKLOAD_PREFIX):
            _check_workload_path(spec, where, path.removeprefix(WORKLOAD_PREFIX), values, value_where,
                                 problems, source)
        else:
            _check_arch_path(chip, leaves, where, path, values, value_where, problems, source)


def grid_size(spec: SweepSpec) -> int:
    """Number of grid points (product of each parameter's value count)."""
    return math.prod(len(p.values) if p.values is not None else (p.num or 0)
                     for p in spec.parameters.values())


def _check_sampler(spec: SweepSpec, problems: list[str], source: str) -> None:
    if spec.sampler.method != "grid":
        return
    for path, p in spec.parameters.items():
        if p.is_range and p.num is None:
            problems.append(f"{source}: parameters.{path}: grid sampling needs num (points along the "
                            "range) or a list of values")
    if not problems and grid_size(spec) > MAX_GRID_POINTS:
        problems.append(f"{source}: sampler: the grid has {grid_size(spec):,} points (over "
                        f"{MAX_GRID_POINTS:,}); draw n_points with random, lhs or sobol, or search")


def check_search(spec: SweepSpec, source: str = "<spec>") -> None:
    """Raise :class:`ConfigError` if the spec cannot be searched (needs one workload)."""
    if len(spec.workloads) != 1:
        raise ConfigError([f"{source}: workloads: search optimises one workload's objectives; "
                           f"the spec lists {len(spec.workloads)} (sample them instead, or split the spec)"])


def check_spec(spec: SweepSpec, source: str = "<spec>", search: bool = False) -> CompiledSpec:
    """Check everything that can be checked before any point is evaluated.

    Raises
    ------
    ConfigError
        Listing every problem found, each naming ``source`` and the dotted path.
    """
    from hwsim.arch import load_arch

    problems: list[str] = []
    try:
        compiled: CompiledSpec | None = compile_spec(spec, source)
    except ConfigError as exc:
        problems += exc.problems
        compiled = None
    try:
        chip = load_arch(spec.arch)
    except ConfigError as exc:
        raise ConfigError([f"{source}: arch: {p}" for p in exc.problems] + problems) from None
    for i, w in enumerate(spec.workloads):
        try:
            probe_workload(w)
        except (HwsimError, TypeError, ValueError) as exc:
            problems.append(f"{source}: workloads[{i}]: {str(exc).splitlines()[0]}")
        if w.capacity is not None and w.capacity.system is not None:
            problems += _check_system(w.capacity.system, f"{source}: workloads[{i}].capacity.system")
    _check_paths(spec, chip, problems, source)
    if not search:
        _check_sampler(spec, problems, source)
    if search:
        try:
            check_search(spec, source)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    assert compiled is not None
    return compiled


def load_spec(path: str | Path) -> SweepSpec:
    """Read a sweep spec from YAML and check it against its base architecture.

    Raises
    ------
    ConfigError
        For a malformed file, an invalid field, an unknown parameter path, a value the
        architecture rejects, an empty space or conflicting options (all before any work).
    """
    path = Path(path)
    spec = spec_from_dict(read_yaml(path), str(path))
    check_spec(spec, str(path))
    return spec
