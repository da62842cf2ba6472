"""One chip running one operator after another, evaluated directly (no events).

When every operator of a flattened schedule waits for the one before it, nothing on the
chip runs concurrently: the compute units and the home-memory port pass from op to op
in index order, and the only overlap is the weight prefetch an op starts for the next
op once it releases the port. Start and end times then follow from a plain recurrence,
which is what this module computes, with exactly the semantics of the SimPy processes
in :mod:`hwsim.engine.schedule` (the property tests hold the two equal):

- op ``i`` starts when op ``i - 1`` ends (or, in an eager pass, when the host has issued
  it); a collective holds its group's network for ``launch + latency``;
- a compute op holds the port for ``launch + overhead + home_s`` (its home-memory time
  less what was prefetched for it) and the units for ``launch + overhead + busy``;
- when it releases the port, it streams op ``i + 1``'s weights into the level inside
  home, as far as that buffer has room, until the next compute op starts.

Events are kept for what really runs concurrently (overlapped or prefetched collectives,
parallel branches, requests, replicas): :func:`is_chain` says which path applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hwsim.arch.model import Chip, MemoryLevel
from hwsim.cost.model import OpCost, transfer_time_s
from hwsim.workload.ops import Collective, Op


class ChainNode(Protocol):
    """What the recurrence reads of a flattened op instance."""

    op: Op
    cost: OpCost
    preds: list[int]
    launch_s: float
    issue_s: float


LogEntry = tuple[int, float, float, float, str]
"""``(index, start_s, end_s, prefetched_bytes, bound)`` of one op instance."""


@dataclass
class ChainRun:
    """The log of a direct evaluation and the time the last activity ended (s)."""

    log: list[LogEntry]
    now: float


def is_chain(nodes: Sequence[ChainNode]) -> bool:
    """Whether every node after the first waits for the node just before it, so that
    index order is execution order and nothing overlaps but the next-op prefetch."""
    return all(i - 1 in node.preds for i, node in enumerate(nodes) if i > 0)


def op_bound(cost: OpCost, home_s: float, inner_s: float, launch_s: float) -> str:
    """What limits an op: fixed ``overhead`` (launch and per-kernel time exceed the
    work), its compute (``compute``, or why the units are underused:
    ``OpCost.compute_limit``), or the memory level whose transfer takes longest."""
    if launch_s + cost.overhead_s > max(cost.compute_s, home_s, inner_s):
        return "overhead"
    if cost.compute_s >= max(home_s, inner_s):
        return cost.compute_limit
    if home_s >= inner_s:
        return cost.traffic[-1].level
    worst = max(range(len(cost.level_s) - 1), key=lambda k: cost.level_s[k])
    return cost.traffic[worst].level


def _buffer_bytes(chip: Chip) -> float:
    """Capacity of the level inside home, where prefetched weights land (B)."""
    names = chip.level_names
    return chip.level_capacity_bytes(names[-2]) if len(names) > 1 else 0.0


Profile = tuple[bool, float, float, float, float, float, float, float, str, str, str]
"""What the recurrence needs of one node, computed once per cost: ``(is_collective,
fixed_s, full_home_s, inner_s, compute_s, footprint_bytes, prefetchable_bytes,
collective_s, home_level, worst_inner_level, compute_limit)``."""


def node_profile(node: ChainNode, home: MemoryLevel) -> Profile:
    """The recurrence's constants for ``node`` (see :data:`Profile`)."""
    cost = node.cost
    if isinstance(node.op, Collective):
        return (True, node.launch_s, 0.0, 0.0, 0.0, 0.0, cost.prefetchable_bytes, cost.latency_s, "", "", "")
    level_s = cost.level_s
    if len(level_s) == 2:  # one level inside home, the common chip: no search
        inner, worst = level_s[0], 0
    else:
        inner = max(level_s[:-1], default=0.0)
        worst = max(range(len(level_s) - 1), key=lambda k: level_s[k]) if len(level_s) > 1 else -1
    return (False, node.launch_s + cost.overhead_s, transfer_time_s(home, cost.traffic[-1].bytes), inner,
            cost.compute_s, cost.footprint_bytes, cost.prefetchable_bytes, 0.0, cost.traffic[-1].level,
            cost.traffic[worst].level if worst >= 0 else "", cost.compute_limit)


def run_chain(nodes: Sequence[ChainNode], chip: Chip,
              profiles: list[Profile | None] | None = None) -> ChainRun:
    """Start and end of every node of a chain (see :func:`is_chain`), in s.

    The arithmetic is done in the order the SimPy processes do it, so both paths give
    the same floats. ``profiles`` caches :func:`node_profile` per node across calls
    (an entry of None is computed and stored).
    """
    home = chip.memory[chip.home_level]
    home_bw = home.bandwidth_bytes_per_s * home.achievable_fraction
    buffer = _buffer_bytes(chip)
    if profiles is None:
        profiles = [None] * len(nodes)
    for i, prof in enumerate(profiles):
        if prof is None:
            profiles[i] = node_profile(nodes[i], home)
    log: list[LogEntry] = []
    now = horizon = 0.0
    prefetched = 0.0  # bytes of the current node's weights streamed in during the last op
    pending: tuple[float, float] | None = None  # (start_s, budget_bytes) of that prefetch
    last = len(nodes) - 1
    for i, node in enumerate(nodes):
        # An eager op waits for the host to issue it (added as a delay, as a timer does).
        issue = node.issue_s
        start = now + (issue - now) if issue > now else now
        collective, fixed, full_s, inner, compute, footprint, _, coll_s, home_name, inner_name, limit = \
            profiles[i]  # type: ignore[misc]
        if collective:
            now = start + (fixed + coll_s)
            log.append((i, start, now, 0.0, "network"))
            horizon = max(horizon, now)
            continue
        if pending is not None:  # this op's start stops the stream into its buffer
            t0, budget = pending
            prefetched = min(budget, (min(start, t0 + budget / home_bw) - t0) * home_bw)
            pending = None
        home_s = full_s - prefetched / home_bw
        if home_s < 0.0:
            home_s = 0.0
        busy = max(compute, inner, home_s)
        released = start + (fixed + home_s)
        now = released + max(0.0, busy - home_s)
        # The bound as :func:`op_bound` names it.
        if fixed > busy:
            bound = "overhead"
        elif compute >= max(home_s, inner):
            bound = limit
        else:
            bound = home_name if home_s >= inner else inner_name
        log.append((i, start, now, prefetched, bound))
        prefetched = 0.0
        if now > horizon:
            horizon = now
        if i < last and buffer > 0:
            budget = min(profiles[i + 1][6], buffer - min(buffer, footprint))  # type: ignore[index]
            if budget > 0:
                pending = (released, budget)
                # The stream's own timer stays scheduled even when a start cuts it short.
                horizon = max(horizon, released + budget / home_bw)
    return ChainRun(log, max(horizon, now))
