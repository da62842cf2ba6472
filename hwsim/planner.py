"""Automatic parallelism plans: enumerate, check, simulate and rank.

:func:`rank_plans` takes a model workload and a system, enumerates every plan that fills
the system (:func:`hwsim.workload.plans.enumerate_plans`), rejects those that cannot
split the model or do not fit a chip's memory (each with its reason), simulates the rest
and ranks them by an objective. Plans that only add work to a plan that already fits
(activation recompute when the same plan fits without it) are listed as dominated
rather than simulated: recompute never makes a step faster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.api import CostCache, simulate
from hwsim.arch.model import Chip
from hwsim.arch.system import System, load_system
from hwsim.cost import OpCost
from hwsim.errors import ConfigError, HwsimError
from hwsim.result import Result
from hwsim.workload.graph import Workload
from hwsim.workload.memory import ChipMemory, memory_per_chip, workspace_allowance_bytes
from hwsim.workload.ops import Op
from hwsim.workload.plan import OffloadTarget, Plan
from hwsim.workload.plans import SHAPE_KEYS, enumerate_plans, memory_reason

OBJECTIVES = {"latency_s": 1.0, "tokens_per_s": -1.0, "energy_per_token_j": 1.0}
"""Objectives plans are ranked by, and their sense (1: smaller is better)."""


@dataclass(frozen=True)
class RankedPlan:
    """One plan and what became of it.

    Attributes
    ----------
    plan : Plan
    result : Result or None
        The simulated step (None when rejected).
    reason : str or None
        Why the plan was rejected (None when it ran).
    memory : ChipMemory or None
        Bytes on the busiest chip (None when the plan cannot split the model).
    short_bytes : float
        By how much the plan misses the chip's and the host's memory together (0 when
        it fits or fails for another reason).
    """

    plan: Plan
    result: Result | None
    reason: str | None
    memory: ChipMemory | None
    short_bytes: float = 0.0

    def row(self) -> dict[str, Any]:
        """A flat record with units in the keys."""
        out: dict[str, Any] = {"plan": self.plan.label(), "n_chips": self.plan.n_chips}
        out["memory_per_chip_bytes"] = self.memory.total_bytes if self.memory else None
        if self.result is not None:
            r = self.result
            out |= {"latency_s": r.latency_s, "tokens_per_s": r.tokens_per_s,
                    "energy_per_token_j": r.energy_per_token_j,
                    "compute_utilization": r.compute_utilization, "bound": r.bound}
        out["rejected_because"] = self.reason
        return out


@dataclass(frozen=True)
class PlanSearch:
    """Ranked plans for one workload on one system.

    Attributes
    ----------
    system, workload, phase, objective : str
    ranked : tuple of RankedPlan
        Plans that ran, best first.
    rejected : tuple of RankedPlan
        Plans that did not, each with its reason, in enumeration order.
    """

    system: str
    workload: str
    phase: str
    objective: str
    ranked: tuple[RankedPlan, ...]
    rejected: tuple[RankedPlan, ...]

    @property
    def best(self) -> RankedPlan:
        """The best plan.

        Raises
        ------
        ConfigError
            If no plan could run, listing the most common reasons.
        """
        if not self.ranked:
            raise ConfigError([f"{self.system}: no plan runs {self.workload} {self.phase} "
                               f"({len(self.rejected)} rejected); most frequent reasons:", *self.reasons(5)])
        return self.ranked[0]

    def reasons(self, limit: int | None = None) -> list[str]:
        """The kinds of rejection, most frequent first: a count and one example each
        (reasons that differ only in their numbers are one kind)."""
        kinds: dict[str, list[str]] = {}
        for r in self.rejected:
            text = _generic(r)
            kinds.setdefault(re.sub(r"\d+(\.\d+)?", "#", text), []).append(text)
        ordered = sorted(kinds.values(), key=lambda texts: -len(texts))[:limit]
        return [f"{len(texts)} x {texts[0]}" if len(texts) == 1 else f"{len(texts)} x like: {texts[0]}"
                for texts in ordered]

    def closest(self) -> RankedPlan | None:
        """The rejected plan that misses memory by the fewest bytes (None if no plan was
        rejected for memory): what to change to make the workload fit."""
        misses = [p for p in self.rejected if p.short_bytes > 0]
        return min(misses, key=lambda p: p.short_bytes, default=None)

    def to_frame(self) -> pd.DataFrame:
        """Every plan, ranked ones first (``rank`` 1, 2, ...), then rejected (``rank`` NaN)."""
        rows = [{"rank": i + 1, **p.row()} for i, p in enumerate(self.ranked)]
        rows += [{"rank": None, **p.row()} for p in self.rejected]
        return pd.DataFrame(rows)


def _generic(r: RankedPlan) -> str:
    """A reason without its plan label, so equal causes of different plans group together."""
    return (r.reason or "").replace(f"{r.plan.label()}: ", "")


def _offload_options(system: System, phase: str, offload: bool) -> tuple[tuple[OffloadTarget, ...], ...]:
    """Offload choices to try: weight streaming (and, for inference, the KV cache) where
    the system has external memory; with ``offload``, host offload as ZeRO-Offload and
    ZeRO-Infinity do it (optimizer state, then weights too; inference: KV cache, weights)."""
    train = phase == "train"
    options: list[tuple[OffloadTarget, ...]] = [()]
    if system.external_memory is not None:
        options += [("weights",), ("weights", "optimizer") if train else ("weights", "kv_cache")]
    elif offload and system.host is not None:
        options += [("optimizer",), ("weights", "optimizer")] if train else [("kv_cache",), ("weights",)]
    return tuple(options)


def _choices(workload: Workload, system: System, offload: bool, options: dict[str, Any]
             ) -> list[RankedPlan]:
    """Every plan filling ``system``: structurally illegal ones and those that do not fit
    memory with their reason, the rest (to be simulated) with none."""
    spec = workload.spec
    assert spec is not None
    args = workload.lower_args
    if args.get("n_layers"):
        spec = spec.model_copy(update={"num_hidden_layers": args["n_layers"]})
    shape = {k: args[k] for k in SHAPE_KEYS if k in args}
    opts = {"offload_options": _offload_options(system, workload.phase, offload)} | options
    plans = enumerate_plans(spec, workload.phase, system.n_chips, batch=args["batch"], **opts, **shape)
    chip = system.chip
    capacity = chip.level_capacity_bytes(chip.home_level)
    shape.setdefault("workspace_bytes", workspace_allowance_bytes(capacity))
    ext = system.external_memory or system.host
    host = ext.capacity_bytes if ext else None
    out = []
    for plan, reason in plans:
        if reason is not None:
            out.append(RankedPlan(plan, None, reason, None))
            continue
        mem = memory_per_chip(spec, workload.phase, plan, batch=args["batch"], **shape)
        short = max(0.0, mem.total_bytes - capacity) + max(0.0, mem.offloaded_bytes - (host or 0.0))
        reason = memory_reason(mem, plan, capacity, chip.home_level, host)
        out.append(RankedPlan(plan, None, reason, mem, short if reason else 0.0))
    return out


def rank_plans(
    workload: Workload, arch: System | Chip | str | Path, *, objective: str = "latency_s",
    offload: bool = False, **options: Any,
) -> PlanSearch:
    """Simulate every legal plan of ``workload`` on the system ``arch`` and rank them.

    Parameters
    ----------
    workload : Workload
        A model workload (from :func:`hwsim.load_workload`); its batch and lengths are
        the global ones the plans split.
    arch : System, Chip or str
        The system (a preset name, YAML path, or a chip for a one-chip system).
    objective : {"latency_s", "tokens_per_s", "energy_per_token_j"}
        What to rank by (latency and energy ascending, throughput descending).
    offload : bool
        Also try host offload (training: optimizer state, then weights too; inference:
        KV cache or weights). Weight streaming is always tried on systems with external
        memory.
    **options
        Passed to :func:`hwsim.workload.plans.enumerate_plans` (``microbatch_options``,
        ``zero_options``, ``recompute_options``, ``schedule_options``, ...).

    Returns
    -------
    PlanSearch

    Raises
    ------
    ConfigError
        For an unknown objective, a single-operator workload or an unknown system.
    """
    if objective not in OBJECTIVES:
        raise ConfigError([f"plan: objective: unknown {objective!r}; "
                           f"expected one of {', '.join(OBJECTIVES)}"])
    if workload.spec is None:
        raise ConfigError([f"plan: {workload.name} is a single operator; plans split model workloads"])
    system = load_system(arch)
    choices = _choices(workload, system, offload, options)
    fitting = {c.plan for c in choices if c.reason is None}
    shared: dict[tuple[Op, bool], OpCost] = {}
    ranked: list[RankedPlan] = []
    rejected: list[RankedPlan] = []
    for choice in choices:
        plan, reason = choice.plan, choice.reason
        lean = plan.model_copy(update={"recompute": False})
        if reason is None and plan.recompute and lean in fitting:
            reason = f"dominated: {lean.label()} fits without recompute, which is never slower"
        result = None
        if reason is None:
            try:
                result = simulate(workload, system, plan=plan,
                                  cache=CostCache(system.chip, system, plan, chip_costs=shared))
            except HwsimError as exc:
                reason = "; ".join(getattr(exc, "problems", None) or [str(exc)])
        done = replace(choice, result=result, reason=reason)
        (rejected if result is None else ranked).append(done)
    sense = OBJECTIVES[objective]
    ranked.sort(key=lambda p: sense * float(getattr(p.result, objective)))
    return PlanSearch(system.name, workload.name, workload.phase, objective, tuple(ranked), tuple(rejected))
