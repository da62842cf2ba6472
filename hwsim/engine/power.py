"""Sustained power limit: ops that would draw more than the board may sustain run at a
lower clock (and voltage) until they draw exactly the limit, as a power-capped GPU does.

The power controller is modelled as an energy bucket of ``burst_energy_j``: an op drawing
more than ``power_limit_w`` spends from it and, once it is empty, runs at the clock that
draws the limit (:mod:`hwsim.cost.power`: core work stretches as ``1 / s``, core energy per
operation falls as ``s**(power_clock_exponent - 1)``); an op drawing less (memory-bound
kernels, gaps between kernels) refills it at the difference. So a lone kernel runs at
full speed, and a long run is held to the limit on average: its memory-bound kernels
lend the matrix products the power they leave unused, up to what the bucket holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from hwsim.arch.model import Chip, MemoryLevel
from hwsim.cost.model import OpCost, transfer_time_s
from hwsim.cost.power import headroom_w, power_shape, run_limited
from hwsim.engine.schedule import OpRecord, Schedule
from hwsim.workload.ops import Collective


@dataclass
class _Bucket:
    """The controller's spare energy (J), the dynamic power the limit leaves (W), the
    power-clock exponent, and the home memory level (for the time of alternative mappings)."""

    capacity_j: float
    headroom_w: float
    alpha: float
    level_j: float
    home: MemoryLevel

    def run(self, rec: OpRecord, value_energy: bool | None = False) -> tuple[float, float, OpCost]:
        """Run ``rec`` at full clock while the bucket lasts, then at the limit, as whichever
        of its mappings (``rec.cost`` or its ``alternative``) costs less from the bucket's
        state; return ``(added_s, dynamic_j, cost)``: the time the limit (and the mapping)
        adds, the energy drawn and the mapping run.

        A mapping costs its time and, where ``value_energy`` says a later op will be held
        to the limit before the bucket next fills, the time the headroom takes to put back
        what it leaves missing: energy drawn now is then energy that later op cannot
        borrow. ``None`` runs ``rec.cost`` alone."""
        duration_s = rec.end_s - rec.start_s
        best: tuple[tuple[float, float], float, float, float, OpCost] | None = None
        for cost in (rec.cost, rec.cost.alternative if value_energy is not None else None):
            if cost is None:
                continue
            # Same launch and prefetch, another mapping's work (schedule._Sim.op_process);
            # never less than the op's slot (what follows was scheduled after it).
            own_s = duration_s if cost is rec.cost else max(
                duration_s, duration_s - self._busy_s(rec.cost, rec) + self._busy_s(cost, rec))
            time_s, energy_j, level_j = run_limited(cost, own_s, self.headroom_w, self.alpha,
                                                    self.level_j, self.capacity_j)
            owed_s = (self.capacity_j - level_j) / self.headroom_w if value_energy else 0.0
            key = (time_s + owed_s, energy_j)
            if best is None or key < best[0]:
                best = (key, time_s, energy_j, level_j, cost)
        assert best is not None
        _, time_s, energy_j, self.level_j, cost = best
        return time_s - duration_s, energy_j, cost

    def _busy_s(self, cost: OpCost, rec: OpRecord) -> float:
        """Kernel time and work of ``cost`` with ``rec``'s weights prefetched, in s."""
        bandwidth = self.home.bandwidth_bytes_per_s * self.home.achievable_fraction
        home_s = transfer_time_s(self.home, cost.traffic[-1].bytes) - rec.prefetched_bytes / bandwidth
        return cost.overhead_s + max((cost.compute_s, *cost.level_s[:-1], home_s, 0.0))

    def step(self, rec: OpRecord, now: float, value_energy: bool | None = False
             ) -> tuple[float, float, OpCost, float]:
        """Refill over the gap since ``now``, then run ``rec``; return ``(added_s,
        dynamic_j, cost, now)``. A collective holds a link, not the compute units, and
        compute may run beside it: its draw is charged at its start, but its span is not
        time the board idles (the gap before the next op on the compute units refills it,
        when there is one)."""
        self.idle(rec.start_s - now)
        if isinstance(rec.op, Collective):
            energy_j = rec.cost.compute_energy_j + sum(rec.cost.level_energy_j) + rec.cost.link_energy_j
            self.level_j = max(0.0, self.level_j - energy_j)
            return 0.0, energy_j, rec.cost, max(now, rec.start_s)
        added, energy_j, cost = self.run(rec, value_energy)
        return added, energy_j, cost, max(now, rec.end_s)

    def idle(self, gap_s: float) -> None:
        """Refill during ``gap_s`` with nothing running."""
        if gap_s > 0.0:
            self.level_j = min(self.capacity_j, self.level_j + self.headroom_w * gap_s)


Interval = tuple[float, float, float]
"""``(start_s, end_s, added_s)``: the power limit adds ``added_s`` over that span."""


@dataclass
class PowerWalk:
    """What the power limit does to one schedule.

    Attributes
    ----------
    intervals : list of Interval
        Spans over which the limit adds time (folded layers appear as one interval).
    per_copy_s : dict
        Per folded segment ``(pass, segment)``, the time added to each periodic copy, in s.
    energy_j : dict
        Per record index, the dynamic energy of one of the instances it stands for
        (their mean, for a folded record), in J; records run wholly at full clock may
        be left out.
    costs : dict
        Per record index, the mapping run where it is the record's ``alternative`` (for a
        folded record, the one its last copy ran).
    """

    intervals: list[Interval]
    per_copy_s: dict[tuple[int, int], float]
    energy_j: dict[int, float]
    costs: dict[int, OpCost]
    level_j: float = 0.0
    """The bucket after the schedule, in J."""


@dataclass
class PowerState:
    """The power controller's bucket of one chip, carried from one schedule (a serving
    iteration) to the next; idle time between them refills it.

    Attributes
    ----------
    capacity_j, headroom_w, alpha : float
        The chip's ``burst_energy_j``, the power its limit leaves above idle, and its
        ``power_clock_exponent``.
    level_j : float
        Energy left in the bucket, in J (starts full).
    """

    capacity_j: float
    headroom_w: float
    alpha: float
    level_j: float

    @classmethod
    def of(cls, chip: Chip) -> PowerState | None:
        """A full bucket for ``chip``, or None when the chip has no power limit."""
        headroom = headroom_w(chip)
        if headroom <= 0.0:
            return None
        return cls(chip.burst_energy_j, headroom, chip.power_clock_exponent, chip.burst_energy_j)

    def idle(self, gap_s: float) -> None:
        """Refill during ``gap_s`` with nothing running."""
        if gap_s > 0.0:
            self.level_j = min(self.capacity_j, self.level_j + self.headroom_w * gap_s)

    def walk_at_full_clock(self, energy_j: Sequence[float], span_s: Sequence[float],
                           collective: Sequence[bool], groups: Sequence[tuple[int, int, int]]) -> bool:
        """Run ops of ``energy_j`` over ``span_s`` (back to back) through the bucket as
        :func:`power_walk` does, if none of them has to slow down.

        A collective is charged its energy at its start and its span refills the bucket
        as idle time (compute may run beside it). ``groups`` are ``(first, stop, copies)``
        index ranges in time order, each followed by ``copies`` identical copies of itself
        (folded layers). Returns False, leaving the bucket as it was, as soon as some op
        would find it empty (then an alternative mapping or a lower clock is in play).
        """
        level, cap, head = self.level_j, self.capacity_j, self.headroom_w
        for first, stop, copies in groups:
            for _ in range(1 + copies):
                before = level
                for k in range(first, stop):
                    e, span = energy_j[k], span_s[k]
                    if collective[k]:
                        if e > level:
                            return False
                        level = min(cap, level - e + head * span)
                        continue
                    over = e - head * span
                    if over > level:
                        return False
                    level = min(cap, level - over)
                if abs(level - before) <= 1e-12 * max(1.0, cap):
                    break  # steady: every remaining copy leaves the bucket as it is
        self.level_j = level
        return True


def power_walk(schedule: Schedule, chip: Chip, level_j: float | None = None) -> PowerWalk:
    """Walk the unstretched schedule's ops in time order through the bucket, which holds
    ``level_j`` at the start (default: full).

    Where ops have an alternative mapping (faster under the limit), a first walk with the
    scheduled mappings finds after which ops the bucket's energy is still of use (a later
    op is held to the limit before the bucket fills up again); the second walk runs each
    op as whichever mapping costs less from its state.
    """
    headroom = headroom_w(chip)
    if headroom <= 0.0:
        return PowerWalk([], {}, {}, {})
    start = chip.burst_energy_j if level_j is None else level_j
    useful = None
    if any(r.cost.alternative is not None for r in schedule.records):
        useful = _energy_useful(*_walk(schedule, chip, headroom, None, start)[1:])
    return _walk(schedule, chip, headroom, useful, start)[0]


def _walk(schedule: Schedule, chip: Chip, headroom: float, useful: dict[int, bool] | None,
          start_j: float) -> tuple[PowerWalk, list[int], dict[int, tuple[bool, bool]]]:
    """One walk from a bucket of ``start_j``; ``useful`` (per record index) lets ops run
    their alternative mapping (``None``: every op its scheduled one). Also returns the
    records in walk order and, per record, whether the limit held it (or its folded
    copies) and whether the bucket was full after it."""
    walk = PowerWalk([], {}, {}, {})
    bucket = _Bucket(chip.burst_energy_j, headroom, chip.power_clock_exponent, start_j,
                     chip.memory[chip.home_level])
    runs = {(r.pass_index, r.segment_index): r for r in schedule.segments}
    order = sorted(range(len(schedule.records)), key=lambda k: schedule.records[k].start_s)
    state: dict[int, tuple[bool, bool]] = {}
    now = 0.0
    i = 0
    while i < len(order):
        rec = schedule.records[order[i]]
        run = runs[(rec.pass_index, rec.segment_index)]
        copies = run.repeat - run.simulated if rec.instance == 1 else 0
        group = [order[i]]
        while (copies > 0 and i + len(group) < len(order)
               and _same_instance(schedule.records[order[i + len(group)]], rec)):
            group.append(order[i + len(group)])
        recs = [schedule.records[k] for k in group]
        for k, r in zip(group, recs, strict=True):
            added, energy, cost, now = bucket.step(r, now, None if useful is None else useful[k])
            if added > 0.0 or copies > 0 or cost is not r.cost:
                walk.energy_j[k] = energy
            if cost is not r.cost:
                walk.costs[k] = cost
            walk.intervals.append((r.start_s, r.end_s, added))
            state[k] = (added > 0.0, bucket.level_j >= bucket.capacity_j * (1 - 1e-12))
        if copies > 0:
            added, energies, costs = _folded(recs, group, bucket, run.period_s, copies, useful)
            walk.intervals.append((recs[-1].end_s, recs[-1].end_s + copies * run.period_s, added))
            walk.per_copy_s[(run.pass_index, run.segment_index)] = added / copies
            for k, r, e, cost in zip(group, recs, energies, costs, strict=True):
                walk.energy_j[k] = (walk.energy_j[k] + e) / (1 + copies)
                if cost is not r.cost:
                    walk.costs[k] = cost
                state[k] = (state[k][0] or added > 0.0, state[k][1])
            now = recs[-1].end_s + copies * run.period_s
        i += len(group)
    walk.level_j = bucket.level_j
    return walk, order, state


def _energy_useful(order: list[int], state: dict[int, tuple[bool, bool]]) -> dict[int, bool]:
    """Per record: whether energy left in the bucket after it is of use, i.e. a later op
    is held to the limit before the bucket is next full."""
    useful: dict[int, bool] = {}
    ahead = False  # of use after the record just visited (walking backwards)
    for k in reversed(order):
        useful[k] = ahead
        held, full = state[k]
        ahead = held or (ahead and not full)
    return useful


def _same_instance(a: OpRecord, b: OpRecord) -> bool:
    return (a.pass_index, a.segment_index, a.instance) == (b.pass_index, b.segment_index, b.instance)


def _folded(group: list[OpRecord], index: list[int], bucket: _Bucket, period_s: float, copies: int,
            useful: dict[int, bool] | None) -> tuple[float, list[float], list[OpCost]]:
    """The added time, each op's summed energy and the mappings the last copy ran over
    ``copies`` periodic repeats of ``group`` (record indices ``index``), walked until the
    bucket is the same after a copy as before it (from then on every copy adds and draws
    the same)."""
    added = 0.0
    energies = [0.0] * len(group)
    costs = [r.cost for r in group]
    for k in range(copies):
        before = bucket.level_j
        now = group[-1].end_s - period_s  # the previous copy's end, relative to this copy
        last = 0.0
        this = []
        for i, r in enumerate(group):
            extra, e, costs[i], now = bucket.step(r, now, None if useful is None else useful[index[i]])
            last += extra
            this.append(e)
        steady = abs(bucket.level_j - before) <= 1e-12 * max(1.0, bucket.capacity_j)
        times = copies - k if steady else 1  # a steady copy stands for all that remain
        added += times * last
        energies = [a + times * e for a, e in zip(energies, this, strict=True)]
        if steady:
            break
    return added, energies, costs


def _time_map(extras: list[tuple[float, float, float]], times: np.ndarray) -> np.ndarray:
    """Times after the stretch: each interval adds its time linearly across itself.
    The intervals are ops on the compute units (and folded runs of them), which never
    overlap, so a sorted cumulative sum places every time in O(log n)."""
    if not extras:
        return times
    arr = np.asarray(sorted(extras), dtype=float)
    s, e, x = arr[:, 0], arr[:, 1], arr[:, 2]
    done = np.concatenate(([0.0], np.cumsum(x)))
    # Intervals ending at or before t have added all their time.
    n_done = np.searchsorted(e, times, side="right")
    shift = done[n_done]
    # The interval that contains t (if any) has added its share so far.
    k = np.minimum(n_done, len(s) - 1)
    inside = (n_done < len(s)) & (times > s[k]) & (e[k] > s[k])
    frac = np.where(inside, (times - s[k]) / np.where(e[k] > s[k], e[k] - s[k], 1.0), 0.0)
    return times + shift + frac * x[k]


def _scaled(rec: OpRecord, dynamic_j: float) -> OpRecord:
    """``rec`` with its core-supply energies scaled so its dynamic energy is ``dynamic_j``."""
    shape = power_shape(rec.cost)
    if shape.core_j <= 0.0:
        return rec
    f = max(0.0, dynamic_j - shape.home_j) / shape.core_j
    if abs(f - 1.0) <= 1e-12:
        return rec
    cost = rec.cost
    levels = tuple(e * f for e in cost.level_energy_j[:-1]) + cost.level_energy_j[-1:]
    return replace(rec, cost=replace(cost, compute_energy_j=cost.compute_energy_j * f, level_energy_j=levels))


def apply_power_limit(schedule: Schedule, chip: Chip, state: PowerState | None = None) -> Schedule:
    """The schedule with every over-limit op stretched in time (the ops after it moved)
    and its core energy lowered to what it draws at the clock it ran at. With ``state``,
    the bucket starts at ``state.level_j`` and ``state`` is left as the schedule leaves it."""
    walk = power_walk(schedule, chip, None if state is None else state.level_j)
    if state is not None:
        state.level_j = walk.level_j
    extras = [x for x in walk.intervals if x[2] > 0.0]
    if not extras and not walk.costs:
        return schedule
    n = len(schedule.records)
    times = np.array([r.start_s for r in schedule.records] + [r.end_s for r in schedule.records]
                     + list(schedule.pass_end_s) + [schedule.latency_s])
    moved = _time_map(extras, times)
    records = tuple(replace(r, start_s=float(moved[k]), end_s=float(moved[n + k]))
                    for k, r in enumerate(schedule.records))
    records = tuple(replace(r, cost=walk.costs[k]) if k in walk.costs else r for k, r in enumerate(records))
    records = tuple(_scaled(r, walk.energy_j[k]) if k in walk.energy_j else r for k, r in enumerate(records))
    added = walk.per_copy_s
    segments = tuple(replace(s, period_s=s.period_s + added.get((s.pass_index, s.segment_index), 0.0))
                     for s in schedule.segments)
    ends = tuple(float(t) for t in moved[2 * n:-1])
    return replace(schedule, records=records, segments=segments, latency_s=float(moved[-1]), pass_end_s=ends)
