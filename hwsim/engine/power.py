"""Sustained power limit: a pass that would draw more than the board may sustain runs
longer, at the limit (clocks drop), as a power-capped GPU does.

The board may exceed ``power_limit_w`` by at most ``burst_energy_j`` before its power
controller lowers the clocks, so a lone kernel runs at full speed while a whole model
forward, back to back for tens of milliseconds, is held to the limit.
"""

from __future__ import annotations

from dataclasses import replace

from hwsim.arch.model import Chip
from hwsim.cost.model import power_limited_time_s
from hwsim.engine.schedule import Schedule


def pass_stretch(schedule: Schedule, chip: Chip) -> list[float]:
    """Per pass, the factor (>= 1) by which the power limit stretches its duration."""
    n_pass = len(schedule.pass_end_s)
    dynamic = [0.0] * n_pass
    for rec in schedule.records:
        cost = rec.cost
        dynamic[rec.pass_index] += schedule.multiplicity(rec) * (
            cost.compute_energy_j + sum(cost.level_energy_j))
    starts = [0.0, *schedule.pass_end_s[:-1]]
    factors = []
    for p in range(n_pass):
        duration = schedule.pass_end_s[p] - starts[p]
        limited = power_limited_time_s(chip, duration, dynamic[p])
        factors.append(limited / duration if duration > 0 else 1.0)
    return factors


def apply_power_limit(schedule: Schedule, chip: Chip) -> Schedule:
    """The schedule with every over-limit pass stretched in time (uniformly within it)."""
    factors = pass_stretch(schedule, chip)
    if all(f == 1.0 for f in factors):
        return schedule
    old_start = [0.0, *schedule.pass_end_s[:-1]]
    new_end: list[float] = []
    t = 0.0
    for p, f in enumerate(factors):
        t += (schedule.pass_end_s[p] - old_start[p]) * f
        new_end.append(t)
    new_start = [0.0, *new_end[:-1]]

    def moved(p: int, time_s: float) -> float:
        return new_start[p] + (time_s - old_start[p]) * factors[p]

    records = tuple(replace(r, start_s=moved(r.pass_index, r.start_s), end_s=moved(r.pass_index, r.end_s))
                    for r in schedule.records)
    segments = tuple(replace(s, period_s=s.period_s * factors[s.pass_index]) for s in schedule.segments)
    return replace(schedule, records=records, segments=segments, latency_s=new_end[-1],
                   pass_end_s=tuple(new_end))
