"""The evaluation side of :mod:`hwsim.ranking`: one deployment's figures
(:class:`ServingPoint`), the evaluator a comparison calls per system and plan, the plans
it tries and the search for the best of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwsim.api import serve
from hwsim.arch.system import System
from hwsim.engine.serve.metrics import SLO
from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.result import ServeResult
from hwsim.errors import ConfigError, HwsimError
from hwsim.workload.plan import Plan


@dataclass(frozen=True)
class ServingPoint:
    """One evaluated deployment: throughput, chips used, their power, what was assumed."""

    output_tokens_per_s: float
    n_chips: int
    average_power_w: float
    metrics: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


Evaluator = Callable[[System, Plan], "ServingPoint | ServeResult | Mapping[str, Any]"]


def serve_evaluator(requests: Requests, model: str, dtype: str = "bf16", slo: SLO | None = None,
                    scheduler: str = "vllm", **options: Any) -> Evaluator:
    """The default evaluation: one :func:`hwsim.serve` run of ``requests`` per plan."""

    def evaluate(system: System, plan: Plan) -> ServeResult:
        return serve(requests, system, model=model, plan=plan, dtype=dtype, scheduler=scheduler, slo=slo,
                     **options)

    return evaluate


def as_point(value: ServingPoint | ServeResult | Mapping[str, Any]) -> ServingPoint:
    """A :class:`ServingPoint` from what an evaluator returned (a point, a serve result,
    or a mapping with ``output_tokens_per_s``, ``n_chips`` and ``average_power_w``)."""
    if isinstance(value, ServingPoint):
        return value
    if isinstance(value, ServeResult):
        m = value.metrics
        return ServingPoint(float(m["output_tokens_per_s"]), value.n_chips, float(m["average_power_w"]),
                            m, value.config, value.warnings)
    if isinstance(value, Mapping):
        missing = [k for k in ("output_tokens_per_s", "n_chips", "average_power_w") if k not in value]
        if missing:
            raise ConfigError([f"evaluate: the metrics returned lack {', '.join(missing)}"])
        return ServingPoint(float(value["output_tokens_per_s"]), int(value["n_chips"]),
                            float(value["average_power_w"]), value, value.get("config", {}),
                            tuple(value.get("warnings", ())))
    raise ConfigError([f"evaluate: expected a ServeResult, ServingPoint or mapping, "
                       f"got {type(value).__name__}"])


def plan_label(plan: Plan) -> str:
    """``tp2 dp4`` (tp1 when nothing is split)."""
    parts = [f"{k}{getattr(plan, k)}" for k in ("tp", "pp", "dp") if getattr(plan, k) > 1]
    return " ".join(parts) or "tp1"


def candidate_plans(system: System) -> list[Plan]:
    """Serving plans tried on a system of n chips: every power-of-two tensor-parallel
    group ``t`` dividing n as ``tp=t, dp=n/t``, then pipelines ``pp=p, dp=n/p``."""
    n = system.n_chips
    sizes = [1 << i for i in range(n.bit_length()) if n % (1 << i) == 0]
    return [Plan(tp=t, dp=n // t) for t in sizes] + [Plan(pp=p, dp=n // p) for p in sizes if p > 1]


def _search(system: System, evaluate: Evaluator, plans: Sequence[Plan], use_goodput: bool,
            ) -> tuple[Plan | None, ServingPoint | None, list[tuple[str, str]]]:
    """Evaluate plans until two tensor-parallel and one pipeline plan have fitted; the fastest
    wins. Returns it, its point, and every plan tried with its outcome."""
    tried: list[tuple[str, str]] = []
    best: tuple[Plan, ServingPoint] | None = None
    fitted = {"tp": 0, "pp": 0}
    for plan in plans:
        kind = "pp" if plan.pp > 1 else "tp"
        if fitted[kind] >= (2 if kind == "tp" else 1):
            continue
        try:
            point = as_point(evaluate(system, plan))
        except HwsimError as exc:
            tried.append((plan_label(plan), "; ".join(getattr(exc, "problems", None) or [str(exc)])))
            continue
        fitted[kind] += 1
        rate = _rate(point, use_goodput)
        tried.append((plan_label(plan), f"{rate:.4g} tok/s"))
        if best is None or rate > _rate(best[1], use_goodput):
            best = (plan, point)
    return (best[0], best[1], tried) if best else (None, None, tried)


def _rate(point: ServingPoint, use_goodput: bool) -> float:
    if use_goodput and "goodput_output_tokens_per_s" in point.metrics:
        return float(point.metrics["goodput_output_tokens_per_s"])
    return point.output_tokens_per_s
