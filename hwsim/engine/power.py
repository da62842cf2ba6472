"""Sustained power limit: ops that would draw more than the board may sustain run longer,
at the limit (clocks drop), as a power-capped GPU does.

The power controller is modelled as an energy bucket of ``burst_energy_j``: an op drawing
more than ``power_limit_w`` spends from it and, once it is empty, is slowed until it
draws exactly the limit; an op drawing less (memory-bound kernels, gaps between kernels)
refills it at the difference. So a lone kernel runs at full speed, a whole model forward
is held to the limit in its matrix products, and its memory-bound kernels cannot lend
the products their spare power beyond what the bucket holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hwsim.arch.model import Chip
from hwsim.engine.schedule import OpRecord, Schedule


@dataclass
class _Bucket:
    """The controller's spare energy (J) and the rate it refills below the limit (W)."""

    capacity_j: float
    headroom_w: float
    level_j: float

    def run(self, duration_s: float, dynamic_j: float) -> float:
        """Spend or refill for work lasting ``duration_s`` with ``dynamic_j`` above idle;
        return the time (s) the power limit adds to it."""
        over_j = dynamic_j - self.headroom_w * duration_s
        if over_j <= 0.0:  # clocks, once lowered, stay low while kernels keep coming
            return 0.0
        used = min(self.level_j, over_j)
        self.level_j -= used
        return (over_j - used) / self.headroom_w

    def idle(self, gap_s: float) -> None:
        """Refill during ``gap_s`` with nothing running."""
        if gap_s > 0.0:
            self.level_j = min(self.capacity_j, self.level_j + self.headroom_w * gap_s)


def _dynamic_j(rec: OpRecord) -> float:
    return rec.cost.compute_energy_j + sum(rec.cost.level_energy_j)


Interval = tuple[float, float, float]
"""``(start_s, end_s, added_s)``: the power limit adds ``added_s`` over that span."""


def power_extras(schedule: Schedule, chip: Chip) -> tuple[list[Interval], dict[tuple[int, int], float]]:
    """Walk the unstretched schedule's ops in time order through the bucket.

    Returns the intervals over which the limit adds time (folded layers appear as one
    interval covering them) and, per folded segment ``(pass, segment)``, the time added
    to each of its periodic copies.
    """
    if chip.power_limit_w is None or chip.power_limit_w <= chip.idle_power_w:
        return [], {}
    bucket = _Bucket(chip.burst_energy_j, chip.power_limit_w - chip.idle_power_w, chip.burst_energy_j)
    runs = {(r.pass_index, r.segment_index): r for r in schedule.segments}
    records = sorted(schedule.records, key=lambda r: r.start_s)
    out: list[Interval] = []
    per_copy: dict[tuple[int, int], float] = {}
    now = 0.0
    i = 0
    while i < len(records):
        rec = records[i]
        run = runs[(rec.pass_index, rec.segment_index)]
        copies = run.repeat - run.simulated if rec.instance == 1 else 0
        group = [rec]
        while copies > 0 and i + len(group) < len(records) and _same_instance(records[i + len(group)], rec):
            group.append(records[i + len(group)])
        for r in group:
            bucket.idle(r.start_s - now)
            out.append((r.start_s, r.end_s, bucket.run(r.end_s - r.start_s, _dynamic_j(r))))
            now = max(now, r.end_s)  # collectives overlap compute: time never runs back
        if copies > 0:
            added = _folded(group, bucket, run.period_s, copies)
            out.append((group[-1].end_s, group[-1].end_s + copies * run.period_s, added))
            per_copy[(run.pass_index, run.segment_index)] = added / copies
            now = group[-1].end_s + copies * run.period_s
        i += len(group)
    return out, per_copy


def _same_instance(a: OpRecord, b: OpRecord) -> bool:
    return (a.pass_index, a.segment_index, a.instance) == (b.pass_index, b.segment_index, b.instance)


def _folded(group: list[OpRecord], bucket: _Bucket, period_s: float, copies: int) -> float:
    """The added time of ``copies`` periodic repeats of ``group``, walked until the bucket
    is the same after a copy as before it (from then on every copy adds the same)."""
    added = 0.0
    for k in range(copies):
        before = bucket.level_j
        now = group[-1].end_s - period_s  # the previous copy's end, relative to this copy
        last = 0.0
        for r in group:
            bucket.idle(r.start_s - now)
            last += bucket.run(r.end_s - r.start_s, _dynamic_j(r))
            now = max(now, r.end_s)
        added += last
        if abs(bucket.level_j - before) <= 1e-12 * max(1.0, bucket.capacity_j):
            return added + (copies - k - 1) * last
    return added


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


def apply_power_limit(schedule: Schedule, chip: Chip) -> Schedule:
    """The schedule with every over-limit op stretched in time (the ops after it moved)."""
    intervals, per_copy = power_extras(schedule, chip)
    extras = [x for x in intervals if x[2] > 0.0]
    if not extras:
        return schedule
    n = len(schedule.records)
    times = np.array([r.start_s for r in schedule.records] + [r.end_s for r in schedule.records]
                     + list(schedule.pass_end_s) + [schedule.latency_s])
    moved = _time_map(extras, times)
    records = tuple(replace(r, start_s=float(moved[k]), end_s=float(moved[n + k]))
                    for k, r in enumerate(schedule.records))
    segments = tuple(replace(s, period_s=s.period_s + per_copy.get((s.pass_index, s.segment_index), 0.0))
                     for s in schedule.segments)
    ends = tuple(float(t) for t in moved[2 * n:-1])
    return replace(schedule, records=records, segments=segments, latency_s=float(moved[-1]), pass_end_s=ends)
