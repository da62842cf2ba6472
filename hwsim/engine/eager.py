"""Host issue in eager passes: which ops run with fewer kernels, which segments the host
holds back.

In an eager pass the host issues every kernel itself (``Chip.host_dispatch_s`` each) and no
kernel starts before it is issued. A mapping with a kernel more (split-K) is then worth
its device time only where the device, not the host, is the bottleneck, and a segment
whose kernels take the device less time than the host needs to issue them is not
periodic while the device spends a lead the host built up before it. Pure functions of
the workload, the chip and op costs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost
from hwsim.workload.graph import Workload
from hwsim.workload.ops import Collective, Op


def fewest_kernels(workload: Workload, chip: Chip, cost_of: Callable[[Op, bool], OpCost]) -> set[Op]:
    """The ops of eager passes to run as their best mapping with the fewest kernels rather
    than their fastest one (split-K: a second kernel).

    A kernel more costs the host its dispatch, which delays every later op when the host is
    the bottleneck and nothing when the device is behind: whether a faster mapping with
    more kernels pays is a question about the whole pass. Each op (every instance alike)
    is switched while that makes the pass finish sooner, the pass timed as a chain: the
    host issues every op's kernels in order, ``host_dispatch_s`` each, and the device runs
    the ops one after another, none before it is issued (collectives hold links, not the
    device). The chain is the expanded pass, so folding does not change the choice.
    """
    if chip.host_dispatch_s <= 0.0:
        return set()
    chain = [op for p in workload.passes if p.eager for seg in p.segments
             for _ in range(seg.repeat) for _, op in seg.graph.ops()]
    distinct = list(dict.fromkeys(chain))
    best = {op: cost_of(op, False) for op in distinct}
    options = {op: (c, cost_of(op, True) if c.n_kernels > 1 else c) for op, c in best.items()}
    switchable = [op for op, (best, fewer) in options.items()
                  if fewer.n_kernels < best.n_kernels and not isinstance(op, Collective)]
    if not switchable:
        return set()
    index = {op: i for i, op in enumerate(distinct)}
    order = np.array([index[op] for op in chain])
    on_device = np.array([not isinstance(op, Collective) for op in distinct])[order]

    def finish_s(chosen: set[Op]) -> tuple[float, float]:
        costs = [options[op][op in chosen] for op in distinct]
        issued_s = np.cumsum(chip.host_dispatch_s * np.array([c.n_kernels for c in costs])[order])
        busy_s = np.where(on_device, np.array([c.latency_s for c in costs])[order], 0.0)
        after_s = np.cumsum(busy_s[::-1])[::-1]  # device time from each op to the end
        # The device ends when the op it last waited for was issued, plus all after it.
        device_s = max(after_s[0], float(np.max(np.where(on_device, issued_s + after_s, 0.0))))
        return max(float(issued_s[-1]), device_s), float(issued_s[-1])

    chosen: set[Op] = set()
    best_s = finish_s(chosen)
    improved = True
    while improved:
        improved = False
        for op in switchable:
            trial = chosen ^ {op}
            trial_s = finish_s(trial)
            if trial_s < best_s:
                chosen, best_s, improved = trial, trial_s, True
    return chosen


def host_bound_segments(workload: Workload, chip: Chip, cost_of: Callable[[Op, bool], OpCost],
                        fewest: set[Op], min_repeat: int) -> frozenset[tuple[int, int]]:
    """``(pass, segment)`` of segments of eager passes repeated more than ``min_repeat``
    times whose ops take the device less time than the host needs to issue their kernels
    (each op's standalone latency against ``host_dispatch_s`` per kernel)."""
    out = set()
    for p_i, p in enumerate(workload.passes):
        for s_i, seg in enumerate(p.segments):
            if not p.eager or seg.repeat <= min_repeat:
                continue
            costs = [cost_of(op, op in fewest) for _, op in seg.graph.ops()]
            device_s = sum(c.latency_s for c, (_, op) in zip(costs, seg.graph.ops(), strict=True)
                           if not isinstance(op, Collective))
            if device_s < chip.host_dispatch_s * sum(c.n_kernels for c in costs):
                out.add((p_i, s_i))
    return frozenset(out)
