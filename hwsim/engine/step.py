"""One step of a lowered workload over every chip of a plan, from the op schedule of one
chip: training steps, single operators, and inference run op by op (``fold=False``).

The schedule (:mod:`hwsim.engine.schedule`, held to the power limit by
:mod:`hwsim.engine.power`) is one micro-batch of one replica on one chip (one pipeline
stage with ``pp``). This module scales it to the whole step: every chip runs its layers
for every micro-batch; only the first (last) stage embeds (runs the head and loss); what
runs once per step (the optimizer, the reduction of accumulated gradients) runs once per
chip; pipelines are played out by :mod:`hwsim.engine.pipeline`; micro-batches without a
pipeline follow one another. Inference normally comes through
:mod:`hwsim.engine.inference` instead; both return a :class:`StepRun`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from hwsim.arch.system import System
from hwsim.cost import collective_op_cost
from hwsim.cost.model import OpCost
from hwsim.dtypes import dtype_bytes
from hwsim.engine.pipeline import StageTimes, play_pipeline
from hwsim.engine.power import apply_power_limit
from hwsim.engine.schedule import Schedule, run_schedule
from hwsim.workload.graph import SegmentRole, Workload
from hwsim.workload.ops import Collective, Embedding, Op
from hwsim.workload.plan import Plan
from hwsim.workload.train import accumulation_pass, runs_once_per_step


@dataclass(frozen=True)
class StepRun:
    """Totals of a step over every chip the plan uses.

    Attributes
    ----------
    latency_s : float
        The step's wall time, in s.
    flops, compute_j, link_j : float
        FLOP, matrix/vector and interconnect energy (J) over every chip.
    level_bytes, level_j : dict
        Bytes and energy (J) at each memory level, by level name, over every chip.
    first_token_s : float or None
        Requests: when every sequence had its first token, in s.
    time_by_bound_s : dict or None
        Op time of one chip by bound, in s (None: read it off the schedule).
    schedule_fn : callable
        The op-level schedule of one chip (one micro-batch), built on demand.
    stats : dict
        Figures of the run to pass on to the result's ``params`` (a decoding
        strategy's accepted tokens per step, draft time share).
    """

    latency_s: float
    flops: float
    compute_j: float
    link_j: float
    level_bytes: dict[str, float]
    level_j: dict[str, float]
    first_token_s: float | None
    time_by_bound_s: dict[str, float] | None
    schedule_fn: Callable[[], Schedule | None]
    stats: dict[str, Any] = field(default_factory=dict)


def run_step(workload: Workload, system: System, cost_of: Callable[..., OpCost],
             fold: bool = True) -> StepRun:
    """Schedule ``workload`` on one chip of ``system`` and scale it to the whole step."""
    chip, plan = system.chip, workload.plan
    schedule = apply_power_limit(run_schedule(workload, chip, cost_of, fold=fold), chip)
    accumulate = None
    if workload.phase == "train" and plan is not None and plan.microbatches > 1:
        # Micro-batches before the last accumulate gradients: they run without what runs
        # once per step (optimizer, gradient reduction of whole gradients).
        acc = replace(workload, passes=(accumulation_pass(workload.passes[0], plan),))
        accumulate = apply_power_limit(run_schedule(acc, chip, cost_of, fold=fold), chip)
    flops, compute_j, link_j, level_bytes, level_j = _totals(workload, schedule, chip.level_names)
    latency = schedule.latency_s
    if plan and (plan.microbatches > 1 or plan.pp > 1):
        if plan.pp > 1:
            latency = _pipeline_latency_s(workload, system, schedule, accumulate)
        else:
            # Every micro-batch but the last runs ``accumulate`` (inference: all alike).
            per_mb = latency if accumulate is None else accumulate.latency_s
            latency = latency + (plan.microbatches - 1) * per_mb
    first = schedule.pass_end_s[0] if workload.phase == "request" else None
    return StepRun(latency, flops, compute_j, link_j, level_bytes, level_j, first, None, lambda: schedule)


def chips_running(workload: Workload, role: SegmentRole, op: Op) -> float:
    """How many times the whole step runs a record of one chip's schedule: every chip
    runs its layers for every micro-batch; only the first (last) pipeline stage embeds
    (runs the head and loss); what runs once per step (the optimizer, the reduction of
    accumulated gradients) runs once per chip."""
    plan = workload.plan or Plan()
    if runs_once_per_step(plan, role, op):
        return plan.n_chips
    per_stage = role in (SegmentRole.EMBED, SegmentRole.HEAD, SegmentRole.LOSS,
                         SegmentRole.EMBED_BWD_OPTIMIZER) or isinstance(op, Embedding)
    return plan.n_chips * plan.microbatches / (plan.pp if per_stage else 1)


def _totals(workload: Workload, schedule: Schedule, levels: tuple[str, ...]
            ) -> tuple[float, float, float, dict[str, float], dict[str, float]]:
    """FLOP, compute, link and per-level energy and bytes of the whole step (all chips)."""
    flops = compute_j = link_j = 0.0
    level_bytes = dict.fromkeys(levels, 0.0)
    level_j = dict.fromkeys(levels, 0.0)
    for rec in schedule.records:
        role = workload.passes[rec.pass_index].segments[rec.segment_index].role
        mult = schedule.multiplicity(rec) * chips_running(workload, role, rec.op)
        flops += mult * rec.cost.flops
        compute_j += mult * rec.cost.compute_energy_j
        link_j += mult * rec.cost.link_energy_j
        for t, e in zip(rec.cost.traffic, rec.cost.level_energy_j, strict=True):
            level_bytes[t.level] += mult * t.bytes
            level_j[t.level] += mult * e
    return flops, compute_j, link_j, level_bytes, level_j


def _segment_time_s(workload: Workload, schedule: Schedule, role: SegmentRole) -> float:
    """Wall time of the segments of ``role`` in the (first) pass, in s."""
    idx = [i for i, s in enumerate(workload.passes[0].segments) if s.role is role]
    recs = [r for r in schedule.records if r.segment_index in idx and r.pass_index == 0]
    return max((r.end_s for r in recs), default=0.0) - min((r.start_s for r in recs), default=0.0)


def _pipeline_latency_s(workload: Workload, system: System, schedule: Schedule,
                        accumulate: Schedule | None) -> float:
    plan = workload.plan
    train = workload.phase == "train"
    r = SegmentRole
    t = {role: _segment_time_s(workload, schedule, role) for role in r}
    # Every micro-batch runs what ``accumulate`` holds; the step's once-per-step work
    # (the optimizer, and the tail of a gradient reduction run after the last backward)
    # follows the last micro-batch.
    acc = t if accumulate is None else {role: _segment_time_s(workload, accumulate, role) for role in r}
    embed_bwd_s = 0.0 if accumulate is None else acc[r.EMBED_BWD_OPTIMIZER]
    optimizer_s = t[r.EMBED_BWD_OPTIMIZER] - embed_bwd_s + t[r.LAYER_BWD] - acc[r.LAYER_BWD]
    times = StageTimes(embed_s=acc[r.EMBED], layers_fwd_s=acc[r.LAYER], head_s=acc[r.HEAD] + acc[r.LOSS],
                       layers_bwd_s=acc[r.LAYER_BWD], embed_bwd_s=embed_bwd_s, optimizer_s=optimizer_s)
    mb_tokens = workload.passes[0].tokens // (plan.dp * plan.microbatches)
    dtype = str(workload.params.get("dtype", "bf16"))
    send = Collective("send_recv", mb_tokens * workload.spec.hidden_size * dtype_bytes(dtype), "pp", plan.pp,
                      dtype)
    send_s = collective_op_cost(system, send, plan.strides["pp"]).latency_s
    makespan, _ = play_pipeline(times, plan.pp, plan.microbatches, send_s, plan.pipeline_schedule, train)
    return makespan
