"""Capacity sweeps: at every sweep point, the highest Poisson arrival rate the chip serves
within an SLO (:func:`hwsim.find_capacity`, MLPerf Server's question).

A workload with ``phase: capacity`` carries a ``capacity:`` block::

    workloads:
      - model: llama2-7b
        phase: capacity
        n_layers: 4                       # optional, as for serve()
        capacity:
          slo: {ttft_s: 0.5, tpot_s: 0.05}  # at least one limit
          n_requests: 32
          prompt_len: 256
          output_len: 32

Each (point, workload) row then carries :data:`CAPACITY_METRICS`: the capacity in
requests/s, per chip, per USD of chip cost (``chip_cost_usd`` of the area/cost model;
empty where the chip states no process node), and how many serving runs the search made.
The row's other simulation metrics (latency, energy) are left empty: a capacity is one
number per point, not one forward pass.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hwsim.quantities import Count, Seed, real_in

#: Columns a capacity workload fills (every other workload leaves them empty).
CAPACITY_METRICS = ("capacity_requests_per_s", "capacity_requests_per_s_per_chip",
                    "capacity_requests_per_s_per_usd", "capacity_bound_requests_per_s",
                    "capacity_output_tokens_per_s", "capacity_evaluations")
#: Workload options a capacity workload may set (passed to :func:`hwsim.serve`); the
#: request shape lives in its ``capacity`` block instead of batch/context options.
CAPACITY_OPTIONS = ("n_layers", "dtype", "attention_impl", "precision", "weight_dtype", "kv_dtype")
Seconds = Annotated[float, real_in(1e-9, 1e9, "s", positive=True)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SLOSpec(_Frozen):
    """Latency limits (seconds) and the percentile they hold at (MLPerf Server: 99)."""

    ttft_s: Seconds | None = None
    tpot_s: Seconds | None = None
    e2e_s: Seconds | None = None
    percentile: Annotated[float, real_in(0.0, 100.0, "%", positive=True, hard=True)] = 99.0

    @model_validator(mode="after")
    def _some_limit(self) -> SLOSpec:
        if self.ttft_s is None and self.tpot_s is None and self.e2e_s is None:
            raise ValueError("a capacity needs at least one limit (ttft_s, tpot_s or e2e_s); "
                             "without one every rate up to the throughput bound meets it")
        return self


class CapacitySpec(_Frozen):
    """How a capacity workload is served and searched (see :func:`hwsim.find_capacity`)."""

    slo: SLOSpec
    n_requests: Count = Field(default=64, le=10_000, description="requests per serving run")
    prompt_len: Count = Field(default=512, description="prompt tokens of every request")
    output_len: Count = Field(default=128, description="output tokens of every request")
    seed: Seed = 0
    scheduler: Literal["vllm", "sarathi", "orca", "static"] = "vllm"
    rel_tol: Annotated[float, real_in(0.0, 1.0, positive=True, hard=True)] = 0.05
    max_evals: Count = Field(default=16, ge=3, le=64, description="most serving runs per point")
    system: str | None = Field(default=None, description="system preset or YAML path; its chip becomes the "
                               "point's chip (fabrics, host kept); None: a one-chip system")
    tp: Count = Field(default=1, description="tensor-parallel chips per replica")
    pp: Count = Field(default=1, description="pipeline stages per replica")
    replicas: Count | None = Field(default=None, description="data-parallel replicas behind the router")

    @model_validator(mode="after")
    def _tolerance(self) -> CapacitySpec:
        if not self.rel_tol < 1.0:
            raise ValueError(f"rel_tol must be below 1, got {self.rel_tol:g}")
        return self


def capacity_metrics(chip: Any, model: str, capacity: CapacitySpec, options: dict[str, Any],
                     chip_cost_usd: float | None, cache: Any, system: Any = None) -> dict[str, float | None]:
    """Search the capacity of ``chip`` (alone, or as the chip of ``system``) and return
    its row metrics.

    Parameters
    ----------
    chip : Chip
        The point's chip.
    model : str
    capacity : CapacitySpec
    options : dict
        :data:`CAPACITY_OPTIONS` set by the workload and swept ``workload.`` parameters.
    chip_cost_usd : float or None
        The chip's cost (USD) from the area/cost model, for the per-dollar capacity.
    cache : ServeCache
        Op costs shared by every run on this chip.
    system : System, optional
        ``capacity.system`` loaded; its chip is replaced by ``chip``.
    """
    from hwsim.api import find_capacity
    from hwsim.engine.serve.metrics import SLO
    from hwsim.workload.plan import Plan

    s = capacity.slo
    slo = SLO(ttft_s=s.ttft_s, tpot_s=s.tpot_s, e2e_s=s.e2e_s, percentile=s.percentile)
    opts = dict(options)
    dtype = opts.pop("dtype", None) or "bf16"
    if capacity.replicas is not None:
        opts["replicas"] = capacity.replicas
    target = chip if system is None else system.model_copy(update={"chip": chip})
    plan = Plan(tp=capacity.tp, pp=capacity.pp) if capacity.tp * capacity.pp > 1 else None
    result = find_capacity(target, model=model, plan=plan, slo=slo, n_requests=capacity.n_requests,
                           prompt_len=capacity.prompt_len, output_len=capacity.output_len, seed=capacity.seed,
                           dtype=dtype, scheduler=capacity.scheduler, rel_tol=capacity.rel_tol,
                           max_evals=capacity.max_evals, cache=cache, **opts)
    usd = chip_cost_usd * result.n_chips if chip_cost_usd else None
    bound = result.bound_rate_per_s
    return {"capacity_requests_per_s": result.rate_per_s,
            "capacity_requests_per_s_per_chip": result.requests_per_s_per_chip,
            "capacity_requests_per_s_per_usd": result.rate_per_s / usd if usd else None,
            "capacity_bound_requests_per_s": bound if math.isfinite(bound) else None,
            "capacity_output_tokens_per_s": result.output_tokens_per_s,
            "capacity_evaluations": float(len(result.points))}
