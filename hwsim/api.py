"""The public entry points: load a workload, simulate it on a chip or a system."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwsim.arch.model import Chip
from hwsim.arch.system import System, load_system, single_chip_system
from hwsim.cost import OpCost, collective_op_cost, cost_op
from hwsim.dtypes import dtype_bytes, normalize_dtype
from hwsim.engine.inference import INFERENCE_PHASES, InferenceRun, run_inference
from hwsim.engine.pipeline import StageTimes, play_pipeline
from hwsim.engine.power import apply_power_limit
from hwsim.engine.schedule import Schedule, run_schedule
from hwsim.engine.serve.deploy import serve_requests
from hwsim.engine.serve.metrics import SLO
from hwsim.engine.serve.options import serve_options
from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.result import ServeResult, serve_result
from hwsim.errors import ConfigError
from hwsim.mapping.fit import check_fit, costing_warnings
from hwsim.result import Result
from hwsim.workload.graph import SegmentRole, Workload
from hwsim.workload.lower import lower
from hwsim.workload.ops import Collective, Embedding, Op
from hwsim.workload.plan import Plan
from hwsim.workload.spec import ModelSpec, load_model_spec
from hwsim.workload.train import accumulation_pass, runs_once_per_step


def load_workload(name_or_path: str | Path, phase: str = "decode", **overrides: Any) -> Workload:
    """Load a model (shipped name, HF ``config.json`` or YAML) and lower it for ``phase``.

    Keyword overrides: ``batch``, ``prompt_len``, ``context_len``, ``new_tokens``,
    ``seq_len``, ``n_layers``, ``dtype``, ``attention_impl``, ``sparsity``, ``lm_head``,
    ``plan`` (see :func:`hwsim.workload.lower`).

    Raises
    ------
    ConfigError
        For an unknown model, an unknown option (with the closest known one) or a bad value.
    """
    known = [k for k, p in inspect.signature(lower).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = [k for k in overrides if k not in known]
    if unknown:
        problems = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"load_workload: {key}: unknown option; {hint}(known: {', '.join(known)})")
        raise ConfigError(problems)
    return lower(load_model_spec(name_or_path), phase, **overrides)


def serve(requests: Requests, arch: Chip | System | str | Path, *,
          model: str | Path | ModelSpec = "llama2-7b", plan: Plan | None = None,
          dtype: str = "bf16", scheduler: str = "vllm", slo: SLO | None = None,
          progress: Callable[[int], None] | None = None, **options: Any) -> ServeResult:
    """Serve ``requests`` on ``arch`` with ``model``: requests arrive over time, a scheduler
    batches them iteration by iteration under a paged KV cache, replicas run the batches.

    Parameters
    ----------
    requests : Requests
        ``hwsim.Requests.offline/.poisson/.bursty/.from_csv``.
    arch : Chip, System or str
        Chip or system preset name, YAML path, or object.
    model : str, path or ModelSpec
    plan : Plan, optional
        Each replica's ``tp`` and ``pp``; ``dp`` replicas (default 1) unless
        ``replicas`` is given.
    dtype : str
    scheduler : {"vllm", "sarathi", "orca", "static"}
        See :mod:`hwsim.engine.serve.scheduler`.
    slo : SLO, optional
        TTFT/TPOT/E2E limits for goodput.
    progress : callable, optional
        Called with the number of requests that have just completed, as the run goes
        (the CLI's progress bar); it sees nothing else and changes nothing.
    **options
        :class:`~hwsim.engine.serve.options.ServeOptions`: ``max_num_seqs``,
        ``max_num_batched_tokens``, ``block_tokens``, ``memory_fraction``, ``watermark``,
        ``preemption`` ("recompute"/"swap"), ``priority``, ``prefix_caching``, ``replicas``,
        ``router``, ``host_overhead_s``, ``attention_impl``, ``n_layers``, ``pools``
        (disaggregated prefill/decode), ``transfer_bytes_per_s``, ``usd_per_chip_hour``.

    Returns
    -------
    ServeResult
        ``output_tokens_per_s``, ``requests`` and ``iterations`` frames, ``metrics``,
        ``summary()``, ``to_json()``.
    """
    opts = serve_options(scheduler, options)
    if progress is not None and not callable(progress):
        raise ConfigError([f"serve: progress: expected a callable, got {type(progress).__name__}"])
    if not isinstance(requests, Requests):
        raise ConfigError([f"serve: requests: expected hwsim.Requests, got {type(requests).__name__}"])
    system = load_system(arch)
    spec = model if isinstance(model, ModelSpec) else load_model_spec(model)
    if opts.n_layers is not None:
        spec = spec.model_copy(update={"num_hidden_layers": opts.n_layers})
    if spec.encoder_only:
        raise ConfigError([f"serve: model: {spec.name} is an encoder; it generates no tokens to serve"])
    try:
        dtype = normalize_dtype(dtype)
    except ValueError as exc:
        raise ConfigError([f"serve: dtype: {exc}"]) from None
    caches: dict[tuple[int, Plan], CostCache] = {}

    def costs(sys_: System, plan_: Plan) -> CostCache:
        key = (id(sys_), plan_)
        if key not in caches:
            caches[key] = CostCache(sys_.chip, sys_, plan_)
        return caches[key]

    run, notes = serve_requests(requests, system, spec, plan, dtype, scheduler, opts, costs, progress)
    config = {"options": opts.model_dump(exclude={"pools"}), "plan": (plan or Plan()).label(),
              "pools": [{"role": p.role, "arch": p.system.name, "plan": p.model.plan.label(),
                         "replicas": p.replicas, "kv_blocks": p.kv.n_blocks,
                         "kv_bytes_per_chip": p.kv.kv_bytes, "weights_bytes_per_chip": p.kv.weights_bytes}
                        for p in run.pools]}
    return serve_result(run, requests, scheduler, spec.name, slo, opts.usd_per_chip_hour, config, notes)


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
    every chip used plus the interconnect, tokens of the global batch. What the run
    simplified or assumed (the workload's own warnings and those found while costing it
    on this chip) is in ``Result.warnings``.

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
    warnings = (*workload.warnings, *costing_warnings(workload, chip))
    if workload.phase in INFERENCE_PHASES and workload.spec is not None and fold:
        return replace(_inference_result(workload, system, run_inference(workload, system, cache)),
                       warnings=warnings)
    schedule = apply_power_limit(run_schedule(workload, chip, cache, fold=fold), chip)
    accumulate = None
    if workload.phase == "train" and plan is not None and plan.microbatches > 1:
        # Micro-batches before the last accumulate gradients: they run without what runs
        # once per step (optimizer, gradient reduction of whole gradients).
        acc = replace(workload, passes=(accumulation_pass(workload.passes[0], plan),))
        accumulate = apply_power_limit(run_schedule(acc, chip, cache, fold=fold), chip)
    return replace(_result(workload, system, schedule, accumulate), warnings=warnings)


def _inference_result(workload: Workload, system: System, run: InferenceRun) -> Result:
    """A :class:`Result` from a static inference run (every chip of the plan)."""
    chip, plan = system.chip, workload.plan
    n_chips = plan.n_chips if plan else 1
    latency = run.latency_s
    breakdown = {"compute_j": run.compute_j, **{f"{k}_j": v for k, v in run.level_j.items()},
                 "interconnect_j": run.link_j, "idle_j": chip.idle_power_w * latency * n_chips}
    if not plan:
        breakdown.pop("interconnect_j")
    batch = workload.params["batch"]
    ttft = tpot = None
    if workload.phase == "request":
        tokens = batch * workload.params["new_tokens"]
        ttft = run.first_token_s or 0.0
        tpot = (latency - ttft) / workload.params["new_tokens"]
    elif workload.phase == "prefill":
        tokens = batch * workload.params["prompt_len"]
    else:
        tokens = batch
    dtype = str(workload.params.get("dtype", "bf16"))
    params = dict(workload.params)
    if plan:
        params |= {"plan": plan.label(), "n_chips": n_chips}
    return Result(
        arch=system.name if plan else chip.name, workload=workload.name, phase=workload.phase,
        latency_s=latency, energy_j=sum(breakdown.values()), energy_breakdown_j=breakdown,
        bytes_by_level={f"{k}_bytes": v for k, v in run.level_bytes.items()}, flops=run.flops,
        tokens=tokens, peak_flops_per_s=chip.peak_flops_per_s(dtype) * n_chips, params=params,
        ttft_s=ttft, tpot_s=tpot, schedule_fn=run.schedule_fn, level_names=chip.level_names,
        time_by_bound_s=run.time_by_bound_s,
    )


def _chips_running(workload: Workload, role: SegmentRole, op: Op) -> float:
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
            ) -> tuple[float, float, float, dict, dict]:
    """FLOP, compute, link and per-level energy and bytes of the whole step (all chips)."""
    flops = compute_j = link_j = 0.0
    level_bytes = dict.fromkeys(levels, 0.0)
    level_j = dict.fromkeys(levels, 0.0)
    for rec in schedule.records:
        role = workload.passes[rec.pass_index].segments[rec.segment_index].role
        mult = schedule.multiplicity(rec) * _chips_running(workload, role, rec.op)
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
        ttft_s=ttft, tpot_s=tpot, schedule_fn=lambda: schedule, level_names=levels,
    )
