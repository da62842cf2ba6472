"""Drawing the points of a sweep: grid, random, Latin hypercube and Sobol sampling.

Random, LHS and Sobol draw points in the unit hypercube (one dimension per sampled
parameter, :mod:`scipy.stats.qmc` for LHS and Sobol) and map each coordinate onto its
parameter: a list of values is split into equal bins, a range is scaled linearly (or in
its logarithm) and rounded when integer. The same spec and seed give the same points.
Derived parameters are then evaluated from the sampled ones.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np

from hwsim.sweep.check import CompiledSpec
from hwsim.sweep.spec import ParamSpec, Value


def _as_number(value: float, integer: bool) -> Value:
    return int(round(value)) if integer else float(value)


def grid_values(p: ParamSpec) -> list[Value]:
    """The values grid sampling takes for one parameter (a range: ``num`` points)."""
    if p.values is not None:
        return list(p.values)
    assert p.low is not None and p.high is not None and p.num is not None
    axis = np.geomspace(p.low, p.high, p.num) if p.log else np.linspace(p.low, p.high, p.num)
    # Rounding may merge neighbours of a short integer range: keep the first of each, in
    # order (a dict, not ``in`` on a list, so a long axis stays linear).
    return list(dict.fromkeys(_as_number(float(v), p.integer) for v in axis))


def from_unit(p: ParamSpec, u: float) -> Value:
    """Map ``u`` in [0, 1) onto the parameter's values or range."""
    if p.values is not None:
        return p.values[min(int(u * len(p.values)), len(p.values) - 1)]
    assert p.low is not None and p.high is not None
    if p.log:
        value = math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    else:
        value = p.low + u * (p.high - p.low)
    value = min(max(value, p.low), p.high)
    if p.integer:
        return int(min(max(round(value), math.ceil(p.low)), math.floor(p.high)))
    return float(value)


def unit_samples(method: str, n_points: int, dims: int, seed: int) -> np.ndarray:
    """``n_points`` x ``dims`` points in the unit hypercube drawn by ``method``."""
    from scipy.stats import qmc

    if method == "random":
        return np.random.default_rng(seed).random((n_points, dims))
    engine_cls = {"lhs": qmc.LatinHypercube, "sobol": qmc.Sobol}[method]
    try:
        engine = engine_cls(dims, rng=np.random.default_rng(seed))
    except TypeError:  # scipy < 1.15 names it seed
        engine = engine_cls(dims, seed=np.random.default_rng(seed))
    with warnings.catch_warnings():
        # Sobol prefers powers of two (balance); any count is still a valid low-discrepancy set.
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(engine.random(n_points))


def sample_points(compiled: CompiledSpec) -> list[dict[str, Any]]:
    """Every point of the sweep, in order: a dict from parameter path (sampled and
    derived) to value. A derived value that is a whole number is stored as an int.

    A point whose derived parameter cannot be computed (division by zero) keeps the
    error under the key ``"__error__"``; it is recorded, not dropped.
    """
    spec = compiled.spec
    params = spec.parameters
    if spec.sampler.method == "grid":
        axes = [grid_values(p) for p in params.values()]
        raw = [dict(zip(params, combo, strict=True)) for combo in itertools.product(*axes)]
    else:
        assert spec.sampler.n_points is not None
        units = unit_samples(spec.sampler.method, spec.sampler.n_points, len(params), spec.sampler.seed)
        raw = [{path: from_unit(p, float(u)) for (path, p), u in zip(params.items(), row, strict=True)}
               for row in units]
    return [with_derived(compiled, point) for point in raw]


def with_derived(compiled: CompiledSpec, point: dict[str, Any]) -> dict[str, Any]:
    """``point`` with its derived parameters added (in dependency order)."""
    out = dict(point)
    for path, expr in compiled.derived:
        try:
            value = expr.evaluate(out)
        except (ArithmeticError, ValueError, TypeError) as exc:
            out[path] = None
            out.setdefault("__error__", f"derived {path} = {expr.text}: {type(exc).__name__}: {exc}")
            continue
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        out[path] = value
    return out
