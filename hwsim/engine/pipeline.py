"""Pipeline parallelism played out in SimPy: stages are resources, micro-batches flow
through them in GPipe or 1F1B order, and the bubbles fall out of the dependencies.

The per-stage work comes from the one-chip schedule of one micro-batch (its segments'
durations): every stage runs ``layers / pp`` layers; the first stage also runs the
embedding and the last the head (and, training, the loss). Activations (and, backward,
their gradients) cross each stage boundary as a send/recv of ``send_s``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy


@dataclass(frozen=True)
class StageTimes:
    """Seconds one micro-batch spends in each part of a stage."""

    embed_s: float
    layers_fwd_s: float
    head_s: float
    layers_bwd_s: float = 0.0
    embed_bwd_s: float = 0.0
    optimizer_s: float = 0.0

    def forward_s(self, stage: int, pp: int) -> float:
        return self.layers_fwd_s + (self.embed_s if stage == 0 else 0.0) + (
            self.head_s if stage == pp - 1 else 0.0)

    def backward_s(self, stage: int, pp: int) -> float:
        return self.layers_bwd_s + (self.embed_bwd_s if stage == 0 else 0.0)


def _order(schedule: str, stage: int, pp: int, m: int, train: bool) -> list[tuple[str, int]]:
    """The (direction, micro-batch) sequence one stage executes."""
    fwd = [("f", i) for i in range(m)]
    if not train:
        return fwd
    bwd = [("b", i) for i in range(m)]
    if schedule == "gpipe":
        return fwd + bwd
    warm = min(pp - stage - 1, m)
    seq = fwd[:warm]
    for i in range(m - warm):
        seq += [fwd[warm + i], bwd[i]]
    return seq + bwd[m - warm:]


def play_pipeline(times: StageTimes, pp: int, microbatches: int, send_s: float, schedule: str,
                  train: bool) -> tuple[float, float]:
    """Makespan of one step (s) and the busiest stage's busy time (s).

    Forward of micro-batch i on stage s waits for stage s-1's forward of i plus the
    send; backward of i on stage s waits for stage s+1's backward of i plus the send
    (and its own forward of i). The optimizer runs on each stage after its last
    backward.
    """
    env = simpy.Environment()
    done = {(d, s, i): env.event() for d in "fb" for s in range(pp) for i in range(microbatches)}
    busy = [0.0] * pp
    ends = [0.0] * pp
    finished: dict[tuple[str, int, int], float] = {}

    def arrive(key: tuple[str, int, int]) -> Generator[Any, Any, None]:
        """Wait for ``key`` to finish upstream and its send to land (sends overlap work)."""
        yield done[key]
        wait = finished[key] + send_s - env.now
        if wait > 0:
            yield env.timeout(wait)

    def stage_proc(s: int) -> Generator[Any, Any, None]:
        for direction, i in _order(schedule, s, pp, microbatches, train):
            if direction == "f":
                if s > 0:
                    yield from arrive(("f", s - 1, i))
                dur = times.forward_s(s, pp)
            else:
                yield done[("f", s, i)]
                if s < pp - 1:
                    yield from arrive(("b", s + 1, i))
                dur = times.backward_s(s, pp)
            yield env.timeout(dur)
            busy[s] += dur
            finished[(direction, s, i)] = env.now
            done[(direction, s, i)].succeed()
        if train:
            yield env.timeout(times.optimizer_s)
            busy[s] += times.optimizer_s
        ends[s] = env.now

    for s in range(pp):
        env.process(stage_proc(s))
    env.run()
    return max(ends), max(busy)


def bubble_fraction(pp: int, microbatches: int) -> float:
    """The closed-form idle share of a balanced pipeline, (p - 1) / (m + p - 1)."""
    return (pp - 1) / (microbatches + pp - 1)
