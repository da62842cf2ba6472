"""Evaluating sweep points: one row per (point, workload), run in any worker process.

Each process keeps a small context per spec: the base chip, the lowered workloads (a
workload does not depend on the architecture, so it is lowered once per (model, phase,
options)), and one :class:`~hwsim.CostCache` per distinct set of architecture
overrides, so op costs are memoised across points that share a chip (points that differ
only in workload options). A failure (a constraint, a model that does not fit, an
invalid combination of values) becomes a row with its reason in ``error``; the sweep
goes on.
"""

from __future__ import annotations

import gc
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from hwsim.errors import HwsimError
from hwsim.sweep.capacity import CAPACITY_METRICS, capacity_metrics
from hwsim.sweep.check import CompiledSpec, Constraint, compile_spec
from hwsim.sweep.spec import METRICS, WORKLOAD_PREFIX, SweepSpec

#: (point_id, parameter values by path, index into spec.workloads)
Task = tuple[int, dict[str, Any], int]
MAX_CHIPS = 512
MAX_WORKLOADS = 64


def param_column(path: str) -> str:
    """Result column of a parameter: ``param_`` + its dotted path."""
    return f"param_{path}"


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _key(values: dict[str, Any]) -> Any:
    """A memo key of parameter values: a tuple of ``(path, type, value)`` (no JSON at every
    point; the type keeps 1, 1.0 and true apart as JSON would), or their JSON where a value
    is not hashable."""
    key = tuple(sorted((path, type(v).__name__, v) for path, v in values.items()))
    try:
        hash(key)
    except TypeError:
        return _canonical(values)
    return key


@dataclass
class _ChipEntry:
    chip: Any
    cache: Any
    area: dict[str, float | None] = field(default_factory=dict)
    area_error: str | None = None
    serve_cache: Any = None  # capacity searches: op costs shared by every serving run on the chip


class _Context:
    """Per-process state for one spec: base chip and memoised chips, caches, workloads."""

    def __init__(self, spec: SweepSpec) -> None:
        from hwsim.arch import load_arch

        self.compiled: CompiledSpec = compile_spec(spec)
        self.spec = spec
        self.base = load_arch(spec.arch)
        self.base_data = self.base.model_dump()  # every variant copies only what it overrides
        self.needs_area = _needs_area(self)
        self.chips: OrderedDict[Any, _ChipEntry] = OrderedDict()
        self.workloads: OrderedDict[Any, Any] = OrderedDict()
        # What every row asks of the spec, once: each workload's fixed options and name,
        # the parameter columns, the constraints checked before and after simulating.
        self._options = [w.options() for w in spec.workloads]
        self.names = [w.name for w in spec.workloads]
        self.param_columns = [(param_column(p), p) for p in spec.param_paths]
        constraints = self.compiled.constraints
        self.pre = [c for c in constraints if c.pre]
        self.post = [c for c in constraints if not c.pre and not c.is_fits]
        self.fits = any(c.is_fits for c in constraints)
        self.metric_names = METRICS + CAPACITY_METRICS if spec.has_capacity else METRICS
        self.systems: dict[str, Any] = {}  # capacity workloads' systems, loaded once

    def chip(self, overrides: dict[str, Any]) -> _ChipEntry:
        """The chip of these architecture overrides, with its cost cache (LRU)."""
        from hwsim.arch import with_overrides
        from hwsim.caches import CostCache

        key = _key(overrides)
        entry = self.chips.get(key)
        if entry is None:
            chip = with_overrides(self.base, overrides, self.base_data) if overrides else self.base
            entry = _ChipEntry(chip, CostCache(chip))
            _remember(self.chips, key, entry, MAX_CHIPS)
        else:
            self.chips.move_to_end(key)
        return entry

    def workload(self, index: int, options: dict[str, Any]) -> Any:
        from hwsim.api import load_workload

        w = self.spec.workloads[index]
        merged = {**self._options[index], **options}
        key = (w.model, w.phase, _key(merged))
        wl = self.workloads.get(key)
        if wl is None:
            wl = load_workload(w.model, phase=w.phase, **merged)
            _remember(self.workloads, key, wl, MAX_WORKLOADS)
        else:
            self.workloads.move_to_end(key)
        return wl


def _remember(cache: OrderedDict, key: Any, value: Any, limit: int) -> None:
    cache[key] = value
    if len(cache) > limit:
        cache.popitem(last=False)


_CONTEXTS: OrderedDict[str, _Context] = OrderedDict()


def _context(payload: dict[str, Any]) -> _Context:
    key = _canonical(payload)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _Context(SweepSpec.model_validate(payload))
        _remember(_CONTEXTS, key, ctx, 4)
    return ctx


_AREA_METRICS = ("area_mm2", "chip_cost_usd", "cost_per_mtok_usd")


def _area(ctx: _Context, entry: _ChipEntry) -> dict[str, float | None]:
    """Area and chip cost of a chip, computed once per chip (the technology table is
    loaded here, at the edge, and passed into the pure area model). A chip that does not
    state its process node (or SerDes lanes, HBM generation) has none: the metrics are
    left empty and ``entry.area_error`` says why."""
    if not entry.area:
        from hwsim.cost.area import chip_area
        from hwsim.cost.die_cost import chip_cost_usd
        from hwsim.technology import load_technology

        node = ctx.spec.cost.node_nm
        tech = load_technology()
        try:
            area = chip_area(entry.chip, tech, node)
            entry.area = {"area_mm2": area.total_mm2,
                          "chip_cost_usd": chip_cost_usd(entry.chip, tech, node, area=area)}
        except HwsimError as exc:
            entry.area = {"area_mm2": None, "chip_cost_usd": None}
            entry.area_error = "no area or cost: " + "; ".join(str(exc).splitlines())
    return entry.area


def _needs_area(ctx: _Context) -> bool:
    """Whether an objective or a constraint of the spec reads an area or cost metric."""
    names = set(ctx.spec.objectives)
    for c in ctx.compiled.constraints:
        if c.expr is not None:
            names |= set(c.expr.names)
    return bool(names & set(_AREA_METRICS))


def _violated(c: Constraint, env: dict[str, Any]) -> str | None:
    """Why ``c`` rejects the point, or None if it holds (a missing metric cannot hold)."""
    assert c.expr is not None
    missing = sorted(n for n in c.expr.names if env.get(n) is None)
    if missing:
        return f"constraint {c.text}: {', '.join(missing)} unknown"
    if c.expr.evaluate(env):
        return None
    sides = ", ".join(f"{n} = {env[n]:.6g}" if isinstance(env[n], float) else f"{n} = {env[n]}"
                      for n in sorted(c.expr.names))
    return f"constraint {c.text} violated ({sides})"


def _cost_per_mtok(ctx: _Context, chip_cost: float, power_w: float, tokens_per_s: float) -> float | None:
    """Cost per million tokens with the spec's cost options (None without throughput)."""
    if not tokens_per_s:
        return None
    from hwsim.cost.die_cost import cost_per_million_tokens_usd

    c = ctx.spec.cost
    return cost_per_million_tokens_usd(chip_cost, power_w, tokens_per_s, lifetime_years=c.lifetime_years,
                                       utilization=c.utilization, usd_per_kwh=c.usd_per_kwh)


def _simulate_metrics(ctx: _Context, entry: _ChipEntry, workload: Any, metrics: dict[str, Any]) -> None:
    from hwsim.api import simulate

    result = simulate(workload, entry.chip, cache=entry.cache)
    power_w = result.energy_j / result.latency_s if result.latency_s else 0.0
    metrics.update(latency_s=result.latency_s, energy_j=result.energy_j,
                   energy_per_token_j=result.energy_per_token_j, tokens_per_s=result.tokens_per_s,
                   power_w=power_w, compute_utilization=result.compute_utilization, bound=result.bound)
    chip_cost = metrics["chip_cost_usd"]
    metrics["cost_per_mtok_usd"] = (None if chip_cost is None
                                    else _cost_per_mtok(ctx, chip_cost, power_w, result.tokens_per_s))
    metrics["published_ppl_delta"] = _published_ppl_delta(workload)


def _published_ppl_delta(workload: Any) -> float | None:
    """The accuracy proxy of a point: the published WikiText-2 perplexity change of its
    model under its precision scheme (0 unquantized; None where no paper reports it)."""
    from hwsim.accuracy import accuracy_delta

    scheme = workload.params.get("precision")
    if workload.spec is None:
        return None
    if scheme is None:
        return 0.0 if workload.params.get("dtype") in ("bf16", "fp16") else None
    return accuracy_delta(workload.spec.name, str(scheme))


def _evaluate(ctx: _Context, point: dict[str, Any], workload_index: int,
              metrics: dict[str, Any]) -> str | None:
    """Fill ``metrics`` for one point and workload; return why it was rejected or failed."""
    from hwsim.mapping.fit import check_fit

    if point.get("__error__"):
        return str(point["__error__"])
    arch = {p: v for p, v in point.items() if not p.startswith((WORKLOAD_PREFIX, "__"))}
    options = {p.removeprefix(WORKLOAD_PREFIX): v for p, v in point.items() if p.startswith(WORKLOAD_PREFIX)}
    entry = ctx.chip(arch)
    metrics.update(_area(ctx, entry))
    if entry.area_error and ctx.needs_area:
        return entry.area_error
    if ctx.pre:
        env = {**point, **metrics}
        for c in ctx.pre:
            if why := _violated(c, env):
                return why
    spec_w = ctx.spec.workloads[workload_index]
    if spec_w.capacity is not None:
        _capacity_metrics(ctx, entry, workload_index, options, metrics)
        return _post_constraints(ctx, point, metrics)
    workload = ctx.workload(workload_index, options)
    if ctx.fits:
        try:
            check_fit(workload, entry.chip)
        except HwsimError as exc:
            return f"constraint fits: {exc}"
    _simulate_metrics(ctx, entry, workload, metrics)
    return _post_constraints(ctx, point, metrics)


def _post_constraints(ctx: _Context, point: dict[str, Any], metrics: dict[str, Any]) -> str | None:
    """Why a constraint on the simulated metrics rejects the point, or None."""
    if ctx.post:
        env = {**point, **metrics}
        for c in ctx.post:
            if why := _violated(c, env):
                return why
    return None


def _capacity_metrics(ctx: _Context, entry: _ChipEntry, workload_index: int, options: dict[str, Any],
                      metrics: dict[str, Any]) -> None:
    """Search the capacity of a point's chip (a model that does not fit is an error row
    from the serving run; the ``fits`` constraint is its check)."""
    from hwsim.caches import ServeCache

    w = ctx.spec.workloads[workload_index]
    assert w.capacity is not None
    if entry.serve_cache is None:
        entry.serve_cache = ServeCache()
    merged = {**ctx._options[workload_index], **options}
    system = None
    if w.capacity.system is not None:
        from hwsim.arch.system import load_system

        system = ctx.systems.get(w.capacity.system)
        if system is None:
            system = ctx.systems[w.capacity.system] = load_system(w.capacity.system)
    metrics.update(capacity_metrics(entry.chip, w.model, w.capacity, merged, metrics.get("chip_cost_usd"),
                                    entry.serve_cache, system))


def evaluate_row(ctx: _Context, point_id: int, point: dict[str, Any], workload_index: int) -> dict[str, Any]:
    """The result row of one point on one workload (never raises for a bad point)."""
    metrics: dict[str, Any] = dict.fromkeys(ctx.metric_names)
    metrics["bound"] = None
    try:
        error = _evaluate(ctx, point, workload_index, metrics)
    except HwsimError as exc:
        error = " ".join(str(exc).split("\n"))
    except Exception as exc:  # noqa: BLE001 - one bad point must not end a long sweep
        error = f"{type(exc).__name__}: {exc}"
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            metrics[key] = None
    row: dict[str, Any] = {"point_id": point_id, "workload": ctx.names[workload_index]}
    row.update({column: point.get(p) for column, p in ctx.param_columns})
    row.update(metrics)
    row["error"] = error
    return row


def evaluate_tasks(payload: dict[str, Any], tasks: list[Task]) -> list[dict[str, Any]]:
    """Rows of ``tasks`` under the spec ``payload`` (``SweepSpec.model_dump(mode="json")``).

    A module-level function of plain data, so any executor (a process pool, a Dask
    worker) can run it; its caches live in the worker process.
    """
    ctx = _context(payload)
    # A point leaves little cyclic garbage but allocates many objects, so the cyclic
    # collector would run often and find little: it is paused for the chunk (a chunk
    # is at most a few dozen points) and collects once after it.
    paused = gc.isenabled()
    gc.disable()
    try:
        return [evaluate_row(ctx, pid, point, wi) for pid, point, wi in tasks]
    finally:
        if paused:
            gc.enable()
