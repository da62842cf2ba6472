"""A model replica as SimPy processes over an environment its caller owns.

A replica is the ``tp * pp`` chips that run one copy of a model under a :class:`Plan`.
Each pipeline stage (its ``tp`` chips in lockstep) is a resource of capacity 1, and each
stage boundary a link: a batch runs stage after stage, its activations crossing every
boundary as a send that holds that link, so up to ``pp`` batches are in flight and the
pipeline's bubbles fall out of the dependencies. What a stage's pass costs comes from
:class:`~hwsim.engine.iteration.ReplicaModel`; each stage keeps its own power-limit
bucket, refilled by the time it stands idle between batches.

The caller composes batches (a static batch, a serving scheduler) and starts
:meth:`Replica.run` as a process per batch; the process's value is the batch's
:class:`BatchRun`, and the replica keeps a plain-tuple log of every stage pass.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from hwsim.engine.iteration import IterationCost, ReplicaModel
from hwsim.engine.power import PowerState

StageLog = tuple[int, int, float, float, IterationCost]
"""``(batch_id, stage, start_s, end_s, cost)`` of one stage pass."""


@dataclass(frozen=True)
class BatchRun:
    """One batch through every stage: when it entered the first stage and left the last
    (s), and each stage's cost."""

    batch_id: int
    start_s: float
    end_s: float
    stages: tuple[IterationCost, ...]

    @property
    def dynamic_j(self) -> float:
        return sum(c.dynamic_j for c in self.stages)


class Replica:
    """One model replica's stages and links on a caller-owned environment.

    Parameters
    ----------
    env : simpy.Environment
    model : ReplicaModel
        Costs of each stage's pass.
    send_s : callable, optional
        Time to send ``n_tokens`` tokens' activations across a stage boundary, in s
        (``pp > 1``).
    name : str
        For logs and traces.
    detail : bool
        Keep each pass's op-level schedule in the log.
    """

    def __init__(self, env: simpy.Environment, model: ReplicaModel,
                 send_s: Callable[[int], float] | None = None, name: str = "replica0",
                 detail: bool = False) -> None:
        self.env, self.model, self.name, self.detail = env, model, name, detail
        pp = model.n_stages
        self.stages = [simpy.Resource(env, capacity=1) for _ in range(pp)]
        self.links = [simpy.Resource(env, capacity=1) for _ in range(pp - 1)]
        self.power = [PowerState.of(model.chip) for _ in range(pp)]
        self._free_since = [0.0] * pp
        self._send_s = send_s
        self._next_id = 0
        self.log: list[StageLog] = []

    @property
    def n_chips(self) -> int:
        return self.model.plan.tp * self.model.plan.pp

    def busy(self) -> bool:
        """Whether a batch holds or waits for the first stage."""
        first = self.stages[0]
        return bool(first.count or first.queue)

    def run(self, q: np.ndarray, k: np.ndarray, n_logits: int,
            left_first_stage: simpy.Event | None = None) -> Generator[Any, Any, BatchRun]:
        """Process: one batch (requests with ``q[i]`` new tokens attending to ``k[i]``
        keys, ``n_logits`` of them sampling) through every stage; ``left_first_stage``
        succeeds when the first stage is free for the next batch."""
        env = self.env
        batch_id, self._next_id = self._next_id, self._next_id + 1
        costs: list[IterationCost] = []
        start_s = env.now
        n_tokens = int(np.sum(q))
        for s, stage in enumerate(self.stages):
            with stage.request() as req:
                yield req
                if s == 0:
                    start_s = env.now
                begin = env.now
                power = self.power[s]
                if power is not None:
                    power.idle(begin - self._free_since[s])
                cost = self.model.run(q, k, n_logits, stage=s, power=power, detail=self.detail)
                yield env.timeout(cost.latency_s)
                self._free_since[s] = env.now
                self.log.append((batch_id, s, begin, env.now, cost))
                costs.append(cost)
            if s == 0 and left_first_stage is not None:
                left_first_stage.succeed()
            if s + 1 < len(self.stages) and self._send_s is not None:
                with self.links[s].request() as link:
                    yield link
                    yield env.timeout(self._send_s(n_tokens))
        return BatchRun(batch_id, start_s, env.now, tuple(costs))

    def totals(self) -> tuple[np.ndarray, dict[str, float]]:
        """What every logged iteration cost, summed: ``[flops, compute_j, link_j,
        *level_bytes, *level_j]`` (levels in the chip's order) and time by bound (s)."""
        levels = self.model.chip.level_names
        dyn = np.zeros(3 + 2 * len(levels))
        bounds: dict[str, float] = {}
        for _, _, _, _, cost in self.log:
            dyn += [cost.flops, cost.compute_j, cost.link_j, *(cost.level_bytes[n] for n in levels),
                    *(cost.level_j[n] for n in levels)]
            for key, t in cost.time_by_bound_s.items():
                bounds[key] = bounds.get(key, 0.0) + t
        return dyn, bounds
