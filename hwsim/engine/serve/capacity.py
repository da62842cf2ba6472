"""Capacity search: the highest Poisson arrival rate a deployment serves within an SLO
(MLPerf Server's question), by bracketing and bisection on the rate.

The search is given a function that serves one request stream at a rate (``inf`` for
all requests at t = 0) and returns its :class:`~hwsim.engine.serve.result.ServeResult`;
:func:`hwsim.find_capacity` builds it from a model, a system and a request shape, with
one seed for every rate (so the arrival times at rate ``r`` are those at rate 1 divided
by ``r``, and every rate sees the same lengths).

A rate *meets* the SLO when every request completes and the SLO's percentile (99 by
default) of each limited metric (TTFT, TPOT, E2E) is within its limit: the run-level,
MLPerf-style test of ``ServeResult.metrics["slo_met"]``.

1. The offline run (every request at t = 0) gives the throughput bound ``r_max`` in
   requests/s: no arrival rate above it can be sustained, so the search stays below it.
2. If Poisson arrivals at ``r_max`` meet the SLO, the capacity is ``r_max`` (the SLO does
   not bind; the deployment is throughput-bound).
3. Otherwise the rate is halved from ``r_max`` until one meets the SLO (at most
   ``max_halvings`` times; none: capacity 0, no rate meets it, e.g. a TTFT limit below one
   request's prefill), then bisected between the highest rate met and the lowest missed
   until they are within ``rel_tol`` of each other or ``max_evals`` runs were made.

Bisection assumes that meeting the SLO is monotone in the rate, which holds for queues
fed by one scaled arrival sequence up to the noise of a finite run; every evaluated point
is kept, so a reader can see whether it did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hwsim.engine.serve.metrics import SLO
from hwsim.engine.serve.result import ServeResult
from hwsim.errors import ConfigError

#: What each evaluated point records (``metrics`` keys of the run at that rate).
POINT_METRICS = ("ttft_p99_s", "tpot_p99_s", "e2e_p99_s", "output_tokens_per_s", "requests_per_s",
                 "goodput_requests_per_s", "slo_attainment")


@dataclass(frozen=True)
class CapacityPoint:
    """One evaluated rate: ``rate_per_s`` (``inf`` for the offline run), whether it met
    the SLO, and the run's metrics named in :data:`POINT_METRICS`."""

    rate_per_s: float
    meets_slo: bool
    metrics: dict[str, float]


@dataclass(frozen=True)
class CapacityResult:
    """What :func:`search_capacity` found.

    Attributes
    ----------
    rate_per_s : float
        The highest arrival rate evaluated that met the SLO (requests/s); 0 if none did.
    bound_rate_per_s : float
        The offline throughput bound (requests/s) the search stayed below.
    upper_rate_per_s : float
        The lowest rate evaluated that missed the SLO (``inf`` if none did): the capacity
        lies between ``rate_per_s`` and it.
    slo : SLO
    n_chips : int
        Chips the replicas use.
    points : tuple of CapacityPoint
        Every run, in evaluation order.
    best : ServeResult or None
        The run at ``rate_per_s``.
    """

    rate_per_s: float
    bound_rate_per_s: float
    upper_rate_per_s: float
    slo: SLO
    n_chips: int
    points: tuple[CapacityPoint, ...]
    best: ServeResult | None

    @property
    def requests_per_s_per_chip(self) -> float:
        """Capacity per chip used (requests/s/chip)."""
        return self.rate_per_s / self.n_chips

    @property
    def output_tokens_per_s(self) -> float:
        """Output tokens/s of the run at the capacity (0 if no rate met the SLO)."""
        return self.best.output_tokens_per_s if self.best is not None else 0.0

    @property
    def is_throughput_bound(self) -> bool:
        """The SLO held at the throughput bound itself."""
        return self.rate_per_s == self.bound_rate_per_s > 0

    def to_frame(self) -> pd.DataFrame:
        """One row per evaluated point: ``rate_per_s``, ``meets_slo`` and the metrics."""
        return pd.DataFrame([{"rate_per_s": p.rate_per_s, "meets_slo": p.meets_slo, **p.metrics}
                             for p in self.points])

    def summary(self) -> dict[str, Any]:
        """The answer in plain numbers (units in every key)."""
        return {"capacity_requests_per_s": self.rate_per_s, "bound_requests_per_s": self.bound_rate_per_s,
                "upper_requests_per_s": self.upper_rate_per_s,
                "capacity_requests_per_s_per_chip": self.requests_per_s_per_chip,
                "output_tokens_per_s": self.output_tokens_per_s, "n_chips": self.n_chips,
                "throughput_bound": self.is_throughput_bound, "n_evaluations": len(self.points),
                "slo": {"ttft_s": self.slo.ttft_s, "tpot_s": self.slo.tpot_s, "e2e_s": self.slo.e2e_s,
                        "percentile": self.slo.percentile}}


def check_slo(slo: object, where: str = "find_capacity") -> SLO:
    """An SLO with at least one limit, else a :class:`ConfigError` saying why."""
    if not isinstance(slo, SLO):
        raise ConfigError([f"{where}: slo: expected hwsim.SLO, got {type(slo).__name__}"])
    if slo.ttft_s is None and slo.tpot_s is None and slo.e2e_s is None:
        raise ConfigError([f"{where}: slo: a capacity needs at least one limit (ttft_s, tpot_s or e2e_s); "
                           "without one every rate up to the throughput bound meets it"])
    return slo


def _check_search(rel_tol: float, max_evals: int, max_halvings: int) -> None:
    problems = []
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not 0 < rel_tol < 1:
        problems.append(f"find_capacity: rel_tol: must be in (0, 1), got {rel_tol!r}")
    for name, value, low in (("max_evals", max_evals, 3), ("max_halvings", max_halvings, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.append(f"find_capacity: {name}: must be an integer >= {low}, got {value!r}")
    if problems:
        raise ConfigError(problems)


def meets(result: ServeResult) -> bool:
    """Every request completed and the run-level SLO test held."""
    m = result.metrics
    return m["n_completed"] == m["n_requests"] and bool(m.get("slo_met", 0.0))


def search_capacity(serve_at: Callable[[float], ServeResult], slo: SLO, n_chips: int, *,
                    rel_tol: float = 0.05, max_evals: int = 16, max_halvings: int = 10) -> CapacityResult:
    """Bracket and bisect the arrival rate (module docstring).

    Parameters
    ----------
    serve_at : callable
        ``serve_at(rate_per_s)`` serves the stream at that Poisson rate (``math.inf``:
        offline) under ``slo`` and returns the result.
    slo : SLO
        With at least one limit.
    n_chips : int
        Chips the replicas use (for the per-chip capacity).
    rel_tol : float
        Stop when the missed and met rates are within this fraction of the missed one.
    max_evals : int
        Most runs, the offline one included.
    max_halvings : int
        Most halvings below the bound before concluding that no rate meets the SLO.
    """
    slo = check_slo(slo)
    _check_search(rel_tol, max_evals, max_halvings)
    points: list[CapacityPoint] = []
    runs: dict[float, ServeResult] = {}

    def evaluate(rate: float) -> bool:
        result = runs[rate] = serve_at(rate)
        ok = meets(result)
        metrics = {k: float(result.metrics.get(k, math.nan)) for k in POINT_METRICS}
        points.append(CapacityPoint(rate, ok, metrics))
        return ok

    evaluate(math.inf)
    bound = float(runs[math.inf].metrics["requests_per_s"])
    lo, hi = 0.0, bound
    if evaluate(bound):
        lo, hi = bound, math.inf
    else:
        rate = bound
        for _ in range(max_halvings):
            if len(points) >= max_evals:
                break
            rate /= 2.0
            if evaluate(rate):
                lo = rate
                break
            hi = rate
        while lo > 0 and len(points) < max_evals and (hi - lo) > rel_tol * hi:
            mid = 0.5 * (lo + hi)
            if evaluate(mid):
                lo = mid
            else:
                hi = mid
    return CapacityResult(lo, bound, hi, slo, n_chips, tuple(points), runs.get(lo) if lo > 0 else None)


@dataclass(frozen=True)
class ReplicaPoint:
    """One evaluated replica count: whether it met the SLO at the target rate, and the
    run's metrics named in :data:`POINT_METRICS`."""

    replicas: int
    meets_slo: bool
    metrics: dict[str, float]


@dataclass(frozen=True)
class ReplicaResult:
    """What :func:`search_replicas` found: the fewest ``replicas`` (None if even
    ``max_replicas`` miss) meeting ``slo`` at ``rate_per_s``, every point in evaluation
    order, and the run at the answer (``best``)."""

    replicas: int | None
    rate_per_s: float
    max_replicas: int
    slo: SLO
    points: tuple[ReplicaPoint, ...]
    best: ServeResult | None

    def to_frame(self) -> pd.DataFrame:
        """One row per evaluated replica count: ``replicas``, ``meets_slo``, the metrics."""
        return pd.DataFrame([{"replicas": p.replicas, "meets_slo": p.meets_slo, **p.metrics}
                             for p in self.points])


def search_replicas(serve_with: Callable[[int], ServeResult], slo: SLO, rate_per_s: float,
                    max_replicas: int) -> ReplicaResult:
    """The fewest replicas in ``1..max_replicas`` that meet ``slo`` at ``rate_per_s``, by
    bisection on the count (meeting the SLO is taken as monotone in it: more replicas
    behind the router never queue longer); ``serve_with(r)`` serves the stream on ``r``."""
    slo = check_slo(slo)
    if isinstance(max_replicas, bool) or not isinstance(max_replicas, int) or max_replicas < 1:
        raise ConfigError([f"find_replicas: max_replicas: must be an integer >= 1, got {max_replicas!r}"])
    points: list[ReplicaPoint] = []
    runs: dict[int, ServeResult] = {}

    def evaluate(n: int) -> bool:
        result = runs[n] = serve_with(n)
        ok = meets(result)
        metrics = {k: float(result.metrics.get(k, math.nan)) for k in POINT_METRICS}
        points.append(ReplicaPoint(n, ok, metrics))
        return ok

    if not evaluate(max_replicas):
        return ReplicaResult(None, rate_per_s, max_replicas, slo, tuple(points), None)
    lo, hi = 0, max_replicas  # lo misses (0 replicas serve nothing), hi meets
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if evaluate(mid):
            hi = mid
        else:
            lo = mid
    return ReplicaResult(hi, rate_per_s, max_replicas, slo, tuple(points), runs[hi])
