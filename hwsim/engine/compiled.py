"""A pass compiled for serving: evaluate only what changes from iteration to iteration.

A serving iteration's pass (:mod:`hwsim.engine.iteration`) is a chain whose ops are the
same every time its token count recurs, except the layers' attention (each iteration's
requests) and the op after each attention (its weights prefetched during attention's
spare port time). Everything between them is a *span* of ops whose timing depends only
on what was prefetched into its first op; its duration, its draw on the power bucket
and its prefetch into what follows are computed once, from a first full evaluation, and
reused while that carry-in is unchanged:

- timing: a span adds its duration; a changing op runs the recurrence of
  :mod:`hwsim.engine.chain` from the span before it;
- the power bucket: an op under the limit maps the bucket's level ``x`` to
  ``min(capacity, x - over)`` and needs ``x >= over`` not to slow (a collective needs
  ``x >= energy``); such maps compose into one of the same form, ``min(C, x - S)``,
  valid while ``x >= V``, so a span is one map and a folded layer's copies one power of
  it (what :func:`hwsim.engine.power.power_walk` does op by op, when nothing slows);
- energy: an op runs its ``alternative`` mapping where the walk would (same slot, less
  energy), decided once for spans and per iteration for the changing ops.

Anything else (a span's carry-in changed, an op would slow, eager or concurrent passes)
returns None and the caller evaluates op by op.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost, transfer_time_s
from hwsim.engine.chain import LogEntry, Profile
from hwsim.engine.schedule import _Node

Clamp = tuple[float, float, float, bool]
"""``(C, S, V, ok)``: the bucket level ``x`` becomes ``min(C, x - S)``, valid while
``x >= V`` (and ``ok``)."""

IDENTITY: Clamp = (math.inf, 0.0, -math.inf, True)


def compose(f: Clamp, g: Clamp) -> Clamp:
    """``f`` then ``g``."""
    c1, s1, v1, ok1 = f
    c2, s2, v2, ok2 = g
    return (min(c2, c1 - s2), s1 + s2, max(v1, v2 + s1), ok1 and ok2 and c1 >= v2)


def repeat(f: Clamp, k: int) -> Clamp:
    """``f`` applied ``k`` times (by squaring)."""
    out, base = IDENTITY, f
    while k:
        if k & 1:
            out = compose(out, base)
        base = compose(base, base)
        k >>= 1
    return out


def op_clamp(capacity: float, energy_j: float, span_s: float, headroom_w: float, collective: bool) -> Clamp:
    """One op of ``energy_j`` over ``span_s`` at full clock (as the power walk runs it)."""
    over = energy_j - headroom_w * span_s
    return (capacity, over, energy_j if collective else over, True)


@dataclass
class _Span:
    first: int
    stop: int
    duration_s: float
    carry_in: float  # bytes prefetched into ``first`` in the first evaluation
    pending_out: tuple[float, float] | None  # (release - span end, budget) of the stream into ``stop``
    horizon_s: float  # how far a stream timer reaches past the span's end
    offsets: list[float]  # start of each node less the span's start
    walk: Clamp


class CompiledPass:
    """A chain pass with fixed ops but for ``dynamic`` node indices (see module docstring).

    Parameters
    ----------
    nodes, profiles, log : list
        The pass's nodes, their recurrence constants and a full evaluation's log.
    chip : Chip
    dynamic : sequence of int
        Nodes whose cost (or carry-in) changes per iteration.
    boundaries : sequence of (int, int, int)
        ``(first, stop, copies)`` ranges the power walk repeats (folded layers).
    capacity_j, headroom_w : float
        The power bucket (``headroom_w`` 0: no limit).
    energy_j : list of float
        Each node's full-clock energy (alternatives already chosen for static nodes).
    """

    def __init__(self, nodes: list[_Node], profiles: list[Profile | None], log: list[LogEntry], chip: Chip,
                 dynamic: Sequence[int], boundaries: Sequence[tuple[int, int, int]], capacity_j: float,
                 headroom_w: float, energy_j: list[float]) -> None:
        home = chip.memory[chip.home_level]
        self.home, self.bw = home, home.bandwidth_bytes_per_s * home.achievable_fraction
        names = chip.level_names
        self.buffer = chip.level_capacity_bytes(names[-2]) if len(names) > 1 else 0.0
        self.nodes, self.profiles = nodes, profiles
        self.dynamic = sorted(set(dynamic))
        self.capacity_j, self.headroom_w = capacity_j, headroom_w
        self.groups = [(a, b, c) for a, b, c in boundaries if c > 0]
        cuts = {0, len(nodes), *(d for d in self.dynamic), *(d + 1 for d in self.dynamic)}
        for a, b, _ in self.groups:
            cuts |= {a, b}
        edges = sorted(cuts)
        self.elements: list[_Span | int] = []
        for a, b in zip(edges, edges[1:], strict=False):
            if a in self.dynamic:
                self.elements.append(a)
            else:
                self.elements.append(self._span(a, b, log, energy_j))
        # Walk order: each element's first node, and which folded range it lies in.
        self._order = [el.first if isinstance(el, _Span) else el for el in self.elements]
        self._group_of = {key: g for key in self._order for g, (a, b, _) in enumerate(self.groups)
                          if a <= key < b}
        self._last_in_group = {g: max(k for k, gg in self._group_of.items() if gg == g)
                               for g in set(self._group_of.values())}

    def _span(self, a: int, b: int, log: list[LogEntry], energy_j: list[float]) -> _Span:
        start, end = log[a][1], log[b - 1][2]
        walk = IDENTITY
        horizon = end
        for i in range(a, b):
            prof = self.profiles[i]
            assert prof is not None
            _, s, e, _, _ = log[i]
            walk = compose(walk, op_clamp(self.capacity_j, energy_j[i], e - s, self.headroom_w, prof[0]))
        pending = None
        last = self.profiles[b - 1]
        assert last is not None
        if b < len(self.nodes) and not last[0] and self.buffer > 0:
            nxt = self.profiles[b]
            assert nxt is not None
            budget = min(nxt[6], self.buffer - min(self.buffer, last[5]))
            if budget > 0:
                released = log[b - 1][2] - max(0.0, max(last[4], last[3], self._home_s(last, log[b - 1][3]))
                                               - self._home_s(last, log[b - 1][3]))
                pending = (released - end, budget)
                horizon = max(horizon, released + budget / self.bw)
        return _Span(a, b, end - start, log[a][3], pending, horizon - end,
                     [log[i][1] - start for i in range(a, b)], walk)

    def _home_s(self, prof: Profile, prefetched: float) -> float:
        return max(0.0, prof[2] - prefetched / self.bw)

    def run(self) -> tuple[float, list[float], Clamp, dict[int, OpCost]] | None:
        """Evaluate the pass with the dynamic nodes' current costs (their profiles
        refreshed by the caller).

        Returns
        -------
        tuple or None
            ``(end_s, starts, walk, swaps)``: when the last activity ends, every node's
            start (s), the pass's bucket map, and the dynamic nodes that run their
            alternative mapping; None when a span's carry-in differs from its first
            evaluation.
        """
        bw = self.bw
        t = horizon = 0.0
        pending: tuple[float, float] | None = None  # (release time, budget) into the next node
        starts = [0.0] * len(self.nodes)
        swaps: dict[int, OpCost] = {}
        walks: dict[int, Clamp] = {}
        for el in self.elements:
            if isinstance(el, _Span):
                carry = 0.0 if pending is None else min(pending[1], (min(t, pending[0] + pending[1] / bw)
                                                                      - pending[0]) * bw)
                if abs(carry - el.carry_in) > 1e-9 * max(1.0, el.carry_in):
                    return None
                for k, off in enumerate(el.offsets):
                    starts[el.first + k] = t + off
                t += el.duration_s
                horizon = max(horizon, t + el.horizon_s)
                pending = None if el.pending_out is None else (t + el.pending_out[0], el.pending_out[1])
                walks[el.first] = el.walk
                continue
            prof = self.profiles[el]
            assert prof is not None
            collective, fixed, full_s, inner, compute, footprint = prof[:6]
            starts[el] = t
            cost = self.nodes[el].cost
            energy = full_j(cost)
            if collective:
                t += fixed + prof[7]
                walks[el] = op_clamp(self.capacity_j, energy, fixed + prof[7], self.headroom_w, True)
                horizon = max(horizon, t)
                continue
            got = 0.0 if pending is None else min(pending[1], (min(t, pending[0] + pending[1] / bw)
                                                                - pending[0]) * bw)
            home_s = max(0.0, full_s - got / bw)
            busy = max(compute, inner, home_s)
            released = t + (fixed + home_s)
            end = released + max(0.0, busy - home_s)
            alt = cost.alternative
            if alt is not None and self.headroom_w > 0:
                alt_j = full_j(alt)
                if alt_j < energy and busy_s(bw, self.home, alt, got) <= busy_s(bw, self.home, cost, got):
                    energy, swaps[el] = alt_j, alt
            walks[el] = op_clamp(self.capacity_j, energy, end - t, self.headroom_w, False)
            t = end
            horizon = max(horizon, t)
            pending = None
            if el + 1 < len(self.nodes) and self.buffer > 0:
                nxt = self.profiles[el + 1]
                assert nxt is not None
                budget = min(nxt[6], self.buffer - min(self.buffer, footprint))
                if budget > 0:
                    pending = (released, budget)
                    horizon = max(horizon, released + budget / bw)
        return max(t, horizon), starts, self._walk(walks), swaps

    def _walk(self, walks: dict[int, Clamp]) -> Clamp:
        """The pass's bucket map: element maps in order, folded ranges repeated."""
        total = IDENTITY
        inside: Clamp | None = None
        for key in self._order:
            group = self._group_of.get(key)
            if group is None:
                total = compose(total, walks[key])
                continue
            inside = compose(IDENTITY if inside is None else inside, walks[key])
            if key == self._last_in_group[group]:
                total = compose(total, repeat(inside, 1 + self.groups[group][2]))
                inside = None
        return total


def full_j(cost: OpCost) -> float:
    """Dynamic energy of an op at full clock, in J."""
    return cost.compute_energy_j + sum(cost.level_energy_j) + cost.link_energy_j


def busy_s(home_bw: float, home: object, cost: OpCost, prefetched: float) -> float:
    """An op's kernel time and work with ``prefetched`` weight bytes already in, in s."""
    home_s = transfer_time_s(home, cost.traffic[-1].bytes) - prefetched / home_bw  # type: ignore[arg-type]
    return cost.overhead_s + max((cost.compute_s, *cost.level_s[:-1], home_s, 0.0))


