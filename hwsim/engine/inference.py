"""A static batch of inference (prefill, one decode step, or whole requests) on a replica.

``hwsim.simulate`` of an inference workload comes here: the batch is split over the
plan's ``dp`` identical replicas and each replica's share into ``microbatches``; every
micro-batch is a process that runs its iterations (a prefill, decode steps) through
the replica's pipeline stages (:mod:`hwsim.engine.replica`), each iteration costed by
:class:`~hwsim.engine.iteration.ReplicaModel`. A serving run uses the same replica and
model with iterations composed by a scheduler instead.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import numpy as np
import simpy

from hwsim.arch.system import System
from hwsim.cost import collective_op_cost
from hwsim.cost.model import OpCost
from hwsim.dtypes import dtype_bytes
from hwsim.engine.generate import run_generation
from hwsim.engine.iteration import ReplicaModel
from hwsim.engine.replica import Replica
from hwsim.engine.schedule import Schedule, SegmentRun
from hwsim.engine.step import StepRun
from hwsim.workload.graph import Workload
from hwsim.workload.ops import Collective
from hwsim.workload.plan import Plan

INFERENCE_PHASES = ("prefill", "decode", "request")


InferenceRun = StepRun
"""A static inference run's totals (the same record as any step's)."""


def compositions(workload: Workload) -> list[tuple[str, int, int]]:
    """The ``(name, q, k)`` of each iteration of one sequence: new tokens and attended keys."""
    p = workload.params
    if workload.phase == "prefill":
        return [("prefill", p["prompt_len"], p["prompt_len"])]
    if workload.phase == "decode":
        return [("decode", 1, p["context_len"] + 1)]
    prompt = p["prompt_len"]
    steps = [(f"decode{i}", 1, prompt + i + 1) for i in range(p["new_tokens"])]
    return [("prefill", prompt, prompt), *steps]


def replica_model(workload: Workload, system: System, cost_of: Callable[..., OpCost]) -> ReplicaModel:
    """The iteration model of ``workload``'s model, dtype and kernels on ``system``'s chip."""
    args = workload.lower_args
    spec = workload.spec
    if args.get("n_layers") is not None:
        spec = spec.model_copy(update={"num_hidden_layers": args["n_layers"]})
    plan = workload.plan or Plan()
    streamed_kv = "kv_cache" in plan.offload or bool(plan.off_chip_shares("kv_cache"))
    return ReplicaModel(spec, system.chip, plan, cost_of, dtype=str(workload.params["dtype"]),
                        attention_impl=str(args.get("attention_impl", "flash")),
                        sparsity=args.get("sparsity"),
                        per_shape=plan.cp > 1 or streamed_kv,
                        capacity_factor=float(args.get("moe_capacity_factor", 1.0)),
                        lowering=workload.iteration_cache, precision=workload.precision)


def stage_send_s(system: System, model: ReplicaModel) -> Callable[[int], float]:
    """Seconds to send ``n_tokens`` tokens' hidden states across a stage boundary."""
    plan, spec = model.plan, model.spec
    width = spec.hidden_size * dtype_bytes(model.dtype)
    memo: dict[int, float] = {}

    def send_s(n_tokens: int) -> float:
        t = memo.get(n_tokens)
        if t is None:
            op = Collective("send_recv", n_tokens * width, "pp", plan.pp, model.dtype)
            t = memo[n_tokens] = collective_op_cost(system, op, plan.strides["pp"]).latency_s
        return t

    return send_s


def run_inference(workload: Workload, system: System, cost_of: Callable[..., OpCost]) -> InferenceRun:
    """Run ``workload`` (lowered for prefill, decode or request, with or without a plan)."""
    model = replica_model(workload, system, cost_of)
    if workload.phase == "request" and workload.lower_args.get("decoding") is not None:
        # A decoding strategy or KV policy shapes the decode steps (engine/generate.py).
        send = stage_send_s(system, model) if model.plan.pp > 1 else None
        return run_generation(workload, system, model, cost_of, send)
    return _run(workload, system, model, detail=False)


def _run(workload: Workload, system: System, model: ReplicaModel, detail: bool) -> InferenceRun:
    plan = model.plan
    env = simpy.Environment()
    replica = Replica(env, model, stage_send_s(system, model) if plan.pp > 1 else None, detail=detail)
    mb = workload.params["batch"] // (plan.dp * plan.microbatches)
    steps = compositions(workload)
    prefill_end: list[float] = []

    def sequence() -> Generator[Any, Any, None]:
        for name, q, k in steps:
            run = yield env.process(replica.run(np.full(mb, q), np.full(mb, k), mb))
            if name == "prefill":
                prefill_end.append(run.end_s)

    for _ in range(plan.microbatches):
        env.process(sequence())
    env.run()
    levels = model.chip.level_names
    dyn, bounds = replica.totals()
    dyn *= plan.dp  # identical replicas
    n = len(levels)
    first = max(prefill_end) if workload.phase == "request" else None
    return InferenceRun(
        latency_s=env.now, flops=float(dyn[0]), compute_j=float(dyn[1]), link_j=float(dyn[2]),
        level_bytes=dict(zip(levels, map(float, dyn[3:3 + n]), strict=True)),
        level_j=dict(zip(levels, map(float, dyn[3 + n:]), strict=True)), first_token_s=first,
        time_by_bound_s=bounds, schedule_fn=lambda: _detail(workload, system, model))


def _detail(workload: Workload, system: System, model: ReplicaModel) -> Schedule:
    """Run again keeping op schedules; join micro-batch 0's passes in time order."""
    plan = model.plan
    env = simpy.Environment()
    replica = Replica(env, model, stage_send_s(system, model) if plan.pp > 1 else None, detail=True)
    mb = workload.params["batch"] // (plan.dp * plan.microbatches)
    names = [name for name, _, _ in compositions(workload)]

    def sequence() -> Generator[Any, Any, None]:
        for _, q, k in compositions(workload):
            yield env.process(replica.run(np.full(mb, q), np.full(mb, k), mb))

    env.process(sequence())
    env.run()
    parts = []
    for batch_id, stage, begin, _, cost in replica.log:
        assert cost.schedule is not None
        name = names[batch_id] + (f"/stage{stage}" if plan.pp > 1 else "")
        parts.append((begin, name, cost.schedule))
    return join_schedules(parts)


def join_schedules(parts: list[tuple[float, str, Schedule]]) -> Schedule:
    """One schedule of one-pass schedules, each shifted to start at its offset (s)."""
    records, runs, ends, names, seg_names = [], [], [], [], []
    latency = 0.0
    for p_i, (offset, name, sched) in enumerate(parts):
        records += [replace(r, pass_index=p_i, start_s=r.start_s + offset, end_s=r.end_s + offset)
                    for r in sched.records]
        runs += [SegmentRun(p_i, r.segment_index, r.repeat, r.simulated, r.period_s) for r in sched.segments]
        ends.append(offset + sched.latency_s)
        names.append(name)
        seg_names.append(sched.segment_names[0])
        latency = max(latency, offset + sched.latency_s)
    return Schedule(tuple(records), tuple(runs), latency, tuple(ends), tuple(names), tuple(seg_names))
