"""The public entry points: load a workload, simulate it on a chip or a system."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from hwsim.arch.model import Chip
from hwsim.arch.system import System, load_system, single_chip_system
from hwsim.cost import OpCost, collective_op_cost, cost_op
from hwsim.dtypes import dtype_bytes
from hwsim.engine.pipeline import StageTimes, play_pipeline
from hwsim.engine.power import apply_power_limit
from hwsim.engine.schedule import Schedule, run_schedule
from hwsim.errors import ConfigError
from hwsim.mapping.fit import check_fit
from hwsim.result import Result
from hwsim.workload.graph import Workload
from hwsim.workload.lower import lower
from hwsim.workload.ops import Collective, Embedding, Op
from hwsim.workload.plan import Plan
from hwsim.workload.spec import load_model_spec
from hwsim.workload.train import accumulation_pass, runs_once_per_step


def load_workload(name_or_path: str | Path, phase: str = "decode", **overrides: Any) -> Workload:
    """Load a model (shipped name, HF ``config.json`` or YAML) and lower it for ``phase``.

    Keyword overrides: ``batch``, ``prompt_len``, ``context_len``, ``new_tokens``,
    ``seq_len``, ``n_layers``, ``dtype``, ``attention_impl``, ``sparsity``, ``lm_head``,
    ``plan`` (see :func:`hwsim.workload.lower`).
    """
    return lower(load_model_spec(name_or_path), phase, **overrides)


class CostCache:
    """Memoised op costs for one chip (and, for collectives, one system and plan);
    share it across simulations of the same chip."""

    def __init__(self, chip: Chip, system: System | None = None, plan: Plan | None = None,
                 chip_costs: dict[tuple[Op, bool], OpCost] | None = None) -> None:
        self.chip = chip
        self.system = system
        self.plan = plan
        # Costs of ops other than collectives depend on the chip alone: ``chip_costs``,
        # keyed by (op, fewest_kernels), may be shared by caches of the same chip under
        # different plans.
        self._chip_costs: dict[tuple[Op, bool], OpCost] = {} if chip_costs is None else chip_costs
        self._net_costs: dict[Op, OpCost] = {}

    def __call__(self, op: Op, fewest_kernels: bool = False) -> OpCost:
        if isinstance(op, Collective):
            cost = self._net_costs.get(op)
            if cost is None:
                system = self.system or single_chip_system(self.chip)
                stride = (self.plan or Plan()).strides.get(op.group, 1)
                cost = self._net_costs[op] = collective_op_cost(system, op, stride)
            return cost
        key = (op, fewest_kernels)
        cost = self._chip_costs.get(key)
        if cost is None:
            cost = self._chip_costs[key] = cost_op(op, self.chip, fewest_kernels=fewest_kernels)
        return cost

    def __len__(self) -> int:
        return len(self._chip_costs) + len(self._net_costs)


def _with_plan(workload: Workload, plan: Plan | None, system: System) -> Workload:
    if plan is not None and plan != workload.plan:
        if workload.spec is None:
            raise ConfigError([f"plan: {workload.name} is a single operator; a plan needs a model workload"])
        workload = lower(workload.spec, workload.phase, **{**workload.lower_args, "plan": plan})
    used = workload.plan.n_chips if workload.plan else 1
    if workload.plan and workload.plan.offload and system.host is None and system.external_memory is None:
        raise ConfigError([f"{system.name}: plan: {workload.plan.label()} offloads "
                           f"{', '.join(workload.plan.offload)}, but the system has no host or "
                           "external memory"])
    if used > system.n_chips:
        raise ConfigError([f"{system.name}: plan: {workload.plan.label()} needs {used} chips; "
                           f"the system has {system.n_chips}"])
    return workload


def simulate(
    workload: Workload, arch: Chip | System | str | Path, *, plan: Plan | None = None,
    fold: bool = True, cache: CostCache | None = None,
) -> Result:
    """Simulate ``workload`` on ``arch`` (a :class:`Chip`, a :class:`System`, or a preset
    name or YAML path of either), optionally split over the system by ``plan``.

    With a plan the result covers the whole system: latency of the step, energy of
    every chip used plus the interconnect, tokens of the global batch.

    Raises
    ------
    ConfigError
        If the architecture cannot be loaded or the plan does not fit the system/model.
    MappingError
        If the workload does not fit a chip's memory or uses an unsupported dtype.
    """
    system = load_system(arch)
    workload = _with_plan(workload, plan, system)
    plan = workload.plan
    chip = system.chip
    check_fit(workload, chip)
    # Collectives (plans only) depend on the system and plan; other ops on the chip alone.
    reusable = cache is not None and cache.chip is chip and cache.plan == plan and (
        plan is None or cache.system is system)
    if not reusable:
        cache = CostCache(chip, system, plan)
    assert cache is not None
    schedule = apply_power_limit(run_schedule(workload, chip, cache, fold=fold), chip)
    accumulate = None
    if workload.phase == "train" and plan is not None and plan.microbatches > 1:
        # Micro-batches before the last accumulate gradients: they run without what runs
        # once per step (optimizer, gradient reduction of whole gradients).
        acc = replace(workload, passes=(accumulation_pass(workload.passes[0], plan),))
        accumulate = apply_power_limit(run_schedule(acc, chip, cache, fold=fold), chip)
    return _result(workload, system, schedule, accumulate)


def _chips_running(workload: Workload, segment: str, op: Op) -> float:
    """How many times the whole step runs a record of one chip's schedule: every chip
    runs its layers for every micro-batch; only the first (last) pipeline stage embeds
    (runs the head and loss); what runs once per step (the optimizer, the reduction of
    accumulated gradients) runs once per chip."""
    plan = workload.plan or Plan()
    if runs_once_per_step(plan, segment, op):
        return plan.n_chips
    per_stage = segment in ("embed", "head", "loss", "embed_bwd_optimizer") or isinstance(op, Embedding)
    return plan.n_chips * plan.microbatches / (plan.pp if per_stage else 1)


def _totals(workload: Workload, schedule: Schedule, levels: tuple[str, ...]
            ) -> tuple[float, float, float, dict, dict]:
    """FLOP, compute, link and per-level energy and bytes of the whole step (all chips)."""
    flops = compute_j = link_j = 0.0
    level_bytes = dict.fromkeys(levels, 0.0)
    level_j = dict.fromkeys(levels, 0.0)
    for rec in schedule.records:
        segment = schedule.segment_names[rec.pass_index][rec.segment_index]
        mult = schedule.multiplicity(rec) * _chips_running(workload, segment, rec.op)
        flops += mult * rec.cost.flops
        compute_j += mult * rec.cost.compute_energy_j
        link_j += mult * rec.cost.link_energy_j
        for t, e in zip(rec.cost.traffic, rec.cost.level_energy_j, strict=True):
            level_bytes[t.level] += mult * t.bytes
            level_j[t.level] += mult * e
    return flops, compute_j, link_j, level_bytes, level_j


def _segment_time_s(schedule: Schedule, name: str) -> float:
    """Wall time of the named segments of the (first) pass, in s."""
    idx = [i for i, n in enumerate(schedule.segment_names[0]) if n == name]
    recs = [r for r in schedule.records if r.segment_index in idx and r.pass_index == 0]
    return max((r.end_s for r in recs), default=0.0) - min((r.start_s for r in recs), default=0.0)


def _pipeline_latency_s(workload: Workload, system: System, schedule: Schedule,
                        accumulate: Schedule | None) -> float:
    plan = workload.plan
    train = workload.phase == "train"
    names = ("embed", "layer", "head", "loss", "layer_bwd", "embed_bwd_optimizer")
    t = {n: _segment_time_s(schedule, n) for n in names}
    # Every micro-batch runs what ``accumulate`` holds; the step's once-per-step work
    # (the optimizer, and the tail of a gradient reduction run after the last backward)
    # follows the last micro-batch.
    acc = t if accumulate is None else {n: _segment_time_s(accumulate, n) for n in names}
    embed_bwd_s = 0.0 if accumulate is None else acc["embed_bwd_optimizer"]
    optimizer_s = t["embed_bwd_optimizer"] - embed_bwd_s + t["layer_bwd"] - acc["layer_bwd"]
    times = StageTimes(embed_s=acc["embed"], layers_fwd_s=acc["layer"], head_s=acc["head"] + acc["loss"],
                       layers_bwd_s=acc["layer_bwd"], embed_bwd_s=embed_bwd_s, optimizer_s=optimizer_s)
    mb_tokens = workload.passes[0].tokens // (plan.dp * plan.microbatches)
    dtype = str(workload.params.get("dtype", "bf16"))
    send = Collective("send_recv", mb_tokens * workload.spec.hidden_size * dtype_bytes(dtype), "pp", plan.pp,
                      dtype)
    send_s = collective_op_cost(system, send, plan.strides["pp"]).latency_s
    makespan, _ = play_pipeline(times, plan.pp, plan.microbatches, send_s, plan.pipeline_schedule, train)
    return makespan


def _result(workload: Workload, system: System, schedule: Schedule,
            accumulate: Schedule | None = None) -> Result:
    chip, plan = system.chip, workload.plan
    levels = chip.level_names
    # One chip's schedule is one micro-batch of one replica (one stage with pp): the
    # totals scale its work to the whole step over every chip.
    flops, compute_j, link_j, level_bytes, level_j = _totals(workload, schedule, levels)
    latency = schedule.latency_s
    n_chips = plan.n_chips if plan else 1
    if plan and (plan.microbatches > 1 or plan.pp > 1):
        if plan.pp > 1:
            latency = _pipeline_latency_s(workload, system, schedule, accumulate)
        else:
            # Every micro-batch but the last runs ``accumulate`` (inference: all alike).
            per_mb = latency if accumulate is None else accumulate.latency_s
            latency = latency + (plan.microbatches - 1) * per_mb
    breakdown = {"compute_j": compute_j, **{f"{k}_j": v for k, v in level_j.items()},
                 "interconnect_j": link_j, "idle_j": chip.idle_power_w * latency * n_chips}
    if not plan:
        breakdown.pop("interconnect_j")
    ttft = tpot = None
    tokens = sum(p.tokens for p in workload.passes)
    if workload.phase == "request":
        ttft = schedule.pass_end_s[0]
        n_steps = len(workload.passes) - 1
        tpot = (schedule.pass_end_s[-1] - ttft) / n_steps
        tokens = sum(p.tokens for p in workload.passes[1:])
    dtype = str(workload.params.get("dtype", "bf16"))
    params = dict(workload.params)
    if plan:
        params |= {"plan": plan.label(), "n_chips": n_chips}
    return Result(
        arch=system.name if plan else chip.name, workload=workload.name, phase=workload.phase,
        latency_s=latency, energy_j=sum(breakdown.values()), energy_breakdown_j=breakdown,
        bytes_by_level={f"{k}_bytes": v for k, v in level_bytes.items()}, flops=flops,
        tokens=tokens, peak_flops_per_s=chip.peak_flops_per_s(dtype) * n_chips, params=params,
        ttft_s=ttft, tpot_s=tpot, schedule=schedule, level_names=levels,
    )
