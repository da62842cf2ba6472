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

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost
from hwsim.cost.power import headroom_w, power_shape, run_limited
from hwsim.engine.schedule import OpRecord, Schedule


@dataclass
class _Bucket:
    """The controller's spare energy (J), the dynamic power the limit leaves (W) and the
    power-clock exponent."""

    capacity_j: float
    headroom_w: float
    alpha: float
    level_j: float

    def run(self, rec: OpRecord) -> tuple[float, float]:
        """Run ``rec`` at full clock while the bucket lasts, then at the limit; return
        ``(added_s, dynamic_j)``: the time the limit adds and the energy drawn."""
        duration_s = rec.end_s - rec.start_s
        time_s, energy_j, self.level_j = run_limited(rec.cost, duration_s, self.headroom_w, self.alpha,
                                                     self.level_j, self.capacity_j)
        return time_s - duration_s, energy_j

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
    """

    intervals: list[Interval]
    per_copy_s: dict[tuple[int, int], float]
    energy_j: dict[int, float]
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

    def over_j(self, cost: OpCost, duration_s: float) -> float:
        """Energy an op draws above what the limit allows over its duration, in J."""
        full = cost.compute_energy_j + sum(cost.level_energy_j) + cost.link_energy_j
        return full - self.headroom_w * duration_s

    def walk_at_full_clock(self, over_j: Sequence[float], groups: Sequence[tuple[int, int, int]]) -> bool:
        """Run ops drawing ``over_j`` above the limit (negative: under it) through the
        bucket, as :func:`power_walk` does, if none of them has to slow down.

        ``groups`` are ``(first, stop, copies)`` index ranges of ``over_j`` in time order,
        each followed by ``copies`` identical copies of itself (folded layers). Returns
        False, leaving the bucket as it was, as soon as some op would find it empty.
        """
        level, cap = self.level_j, self.capacity_j
        for first, stop, copies in groups:
            for _ in range(1 + copies):
                before = level
                for over in over_j[first:stop]:
                    if over > level:
                        return False
                    level = min(cap, level - over)
                if abs(level - before) <= 1e-12 * max(1.0, cap):
                    break  # steady: every remaining copy leaves the bucket as it is
        self.level_j = level
        return True


def power_walk(schedule: Schedule, chip: Chip, level_j: float | None = None) -> PowerWalk:
    """Walk the unstretched schedule's ops in time order through the bucket, which
    holds ``level_j`` at the start (default: full)."""
    walk = PowerWalk([], {}, {})
    headroom = headroom_w(chip)
    if headroom <= 0.0:
        return walk
    start = chip.burst_energy_j if level_j is None else level_j
    bucket = _Bucket(chip.burst_energy_j, headroom, chip.power_clock_exponent, start)
    runs = {(r.pass_index, r.segment_index): r for r in schedule.segments}
    order = sorted(range(len(schedule.records)), key=lambda k: schedule.records[k].start_s)
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
            bucket.idle(r.start_s - now)
            added, energy = bucket.run(r)
            if added > 0.0 or copies > 0:
                walk.energy_j[k] = energy
            walk.intervals.append((r.start_s, r.end_s, added))
            now = max(now, r.end_s)  # collectives overlap compute: time never runs back
        if copies > 0:
            added, energies = _folded(recs, bucket, run.period_s, copies)
            walk.intervals.append((recs[-1].end_s, recs[-1].end_s + copies * run.period_s, added))
            walk.per_copy_s[(run.pass_index, run.segment_index)] = added / copies
            for k, e in zip(group, energies, strict=True):
                walk.energy_j[k] = (walk.energy_j[k] + e) / (1 + copies)
            now = recs[-1].end_s + copies * run.period_s
        i += len(group)
    walk.level_j = bucket.level_j
    return walk


def _same_instance(a: OpRecord, b: OpRecord) -> bool:
    return (a.pass_index, a.segment_index, a.instance) == (b.pass_index, b.segment_index, b.instance)


def _folded(group: list[OpRecord], bucket: _Bucket, period_s: float, copies: int
            ) -> tuple[float, list[float]]:
    """The added time and each op's summed energy over ``copies`` periodic repeats of
    ``group``, walked until the bucket is the same after a copy as before it (from then
    on every copy adds and draws the same)."""
    added = 0.0
    energies = [0.0] * len(group)
    for k in range(copies):
        before = bucket.level_j
        now = group[-1].end_s - period_s  # the previous copy's end, relative to this copy
        last = 0.0
        this = []
        for r in group:
            bucket.idle(r.start_s - now)
            extra, e = bucket.run(r)
            last += extra
            this.append(e)
            now = max(now, r.end_s)
        steady = abs(bucket.level_j - before) <= 1e-12 * max(1.0, bucket.capacity_j)
        times = copies - k if steady else 1  # a steady copy stands for all that remain
        added += times * last
        energies = [a + times * e for a, e in zip(energies, this, strict=True)]
        if steady:
            break
    return added, energies


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
    if not extras:
        return schedule
    n = len(schedule.records)
    times = np.array([r.start_s for r in schedule.records] + [r.end_s for r in schedule.records]
                     + list(schedule.pass_end_s) + [schedule.latency_s])
    moved = _time_map(extras, times)
    records = tuple(replace(r, start_s=float(moved[k]), end_s=float(moved[n + k]))
                    for k, r in enumerate(schedule.records))
    records = tuple(_scaled(r, walk.energy_j[k]) if k in walk.energy_j else r for k, r in enumerate(records))
    added = walk.per_copy_s
    segments = tuple(replace(s, period_s=s.period_s + added.get((s.pass_index, s.segment_index), 0.0))
                     for s in schedule.segments)
    ends = tuple(float(t) for t in moved[2 * n:-1])
    return replace(schedule, records=records, segments=segments, latency_s=float(moved[-1]), pass_end_s=ends)
