"""A static batch of whole requests under a decoding strategy (``phase="request"`` with
``decoding=`` or ``kv_policy=``): the prefill, then decode steps as
:class:`~hwsim.engine.decoding.DecodingModel` shapes them.

Every sequence of the batch advances alike, so a drafting strategy advances by its
*expected* tokens per step ``E[L]``: step ``i`` starts with ``floor(i E[L])`` tokens
generated and the run takes ``ceil(new_tokens / E[L])`` steps (the last step's surplus
tokens are dropped, as a server stops at the requested length). The side work of a step
(draft passes, heads, selection kernels) runs on the replica's chips before its target
pass: a time-shared draft holds them, and a draft on other chips must still finish
before the target can verify.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from hwsim.arch.system import System
from hwsim.cost.model import OpCost
from hwsim.engine.decoding import DecodingModel
from hwsim.engine.iteration import ReplicaModel
from hwsim.engine.replica import Replica
from hwsim.engine.step import StepRun
from hwsim.workload.graph import Workload


def decoding_of(workload: Workload) -> tuple[Any, Any]:
    """The workload's ``(decoding, kv_policy)`` specs (None where not given)."""
    args = workload.lower_args or {}
    return args.get("decoding"), args.get("kv_policy")


def run_generation(workload: Workload, system: System, model: ReplicaModel, cost_of: Callable[..., OpCost],
                   send_s: Callable[[int], float] | None) -> StepRun:
    """Run a request workload under its decoding strategy (module docstring)."""
    decoding, kv_policy = decoding_of(workload)
    dm = DecodingModel(decoding, kv_policy, model, cost_of)
    plan = model.plan
    env = simpy.Environment()
    replica = Replica(env, model, send_s)
    mb = workload.params["batch"] // (plan.dp * plan.microbatches)
    prompt, new = int(workload.params["prompt_len"]), int(workload.params["new_tokens"])
    mean = dm.mean_tokens_per_step
    prefill_end: list[float] = []
    side = {"time_s": 0.0, "energy_j": 0.0, "draft_s": 0.0, "steps": 0}

    def step(q: np.ndarray, k: np.ndarray, decode: np.ndarray) -> Generator[Any, Any, float]:
        tq, tk, logits = dm.target_rows(q, k, mb, decode)
        extra = dm.side_cost(q, k, decode, mb)
        side["time_s"] += extra.time_s
        side["energy_j"] += extra.energy_j
        side["draft_s"] += extra.draft_s
        if extra.time_s > 0:
            yield env.timeout(extra.time_s)
        run = yield env.process(replica.run(tq, tk, logits))
        return float(run.end_s)

    def sequence() -> Generator[Any, Any, None]:
        end = yield from step(np.full(mb, prompt), np.full(mb, prompt), np.zeros(mb, dtype=bool))
        prefill_end.append(end)
        i = 0
        while math.floor(i * mean + 1e-9) < new:
            context = prompt + math.floor(i * mean + 1e-9)
            yield from step(np.ones(mb, dtype=np.int64), np.full(mb, context + 1), np.ones(mb, dtype=bool))
            side["steps"] += 1
            i += 1

    for _ in range(plan.microbatches):
        env.process(sequence())
    env.run()
    levels = model.chip.level_names
    dyn, bounds = replica.totals()
    dyn[1] += side["energy_j"]  # the side work's energy, booked as compute (see warnings)
    dyn *= plan.dp
    n = len(levels)
    steps = int(side["steps"]) // plan.microbatches
    stats: dict[str, Any] = {
        "decoding": dm.decoding.label(), "kv_policy": dm.kv_policy.label(),
        "decode_steps": steps, "accepted_tokens_per_step": new / steps if steps else 0.0,
        "expected_tokens_per_step": mean, "var_tokens_per_step": dm.var_tokens_per_step,
        "draft_time_share": side["draft_s"] / env.now if env.now > 0 else 0.0,
        "side_time_s": side["time_s"] / plan.microbatches,
    }
    return StepRun(
        latency_s=env.now, flops=float(dyn[0]), compute_j=float(dyn[1]), link_j=float(dyn[2]),
        level_bytes=dict(zip(levels, map(float, dyn[3:3 + n]), strict=True)),
        level_j=dict(zip(levels, map(float, dyn[3 + n:]), strict=True)), first_token_s=max(prefill_end),
        time_by_bound_s=bounds, schedule_fn=lambda: None, stats=stats)


__all__ = ["decoding_of", "run_generation"]
