"""How one op's time and energy change when a power limit lowers the core clock.

A power-capped GPU holds its board power at the limit by lowering the core clock and,
with it, the core voltage. Work on the core clock (the matrix and vector units, the
on-chip memories) then takes ``1 / s`` as long at clock fraction ``s``, and its energy
per operation falls as the voltage does: board dynamic power scales as ``s**alpha`` with
``alpha = power_clock_exponent`` (``f V**2`` with ``V`` following ``f``: 3 at most, 1
when only the clock changes), so core energy per operation scales as ``s**(alpha - 1)``.
The home memory (HBM) is on its own supply: its bytes cost the same at any clock and
take no longer. Energies in a chip's description are at full clock.

Everything here is a pure function of one op's cost; the engine
(:mod:`hwsim.engine.power`) walks the schedule through the controller's energy bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.optimize import brentq

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost
from hwsim.errors import SimulationError

#: Lowest clock fraction the search considers: far below any clock a power cap reaches
#: on a real workload; it only bounds the root search.
MIN_CLOCK_FRACTION = 0.1


@dataclass(frozen=True)
class PowerShape:
    """One op's time and dynamic energy as functions of the clock fraction ``s``.

    Attributes
    ----------
    duration_s : float
        Time at full clock (as scheduled: prefetch may have shortened it), in s.
    overhead_s : float
        Fixed per-kernel time, in s.
    core_s : float
        Time of the work on the core clock (compute, on-chip levels) at full clock, in s.
    core_j : float
        Dynamic energy on the core supply at full clock, in J.
    home_j : float
        Dynamic energy off the core supply (home memory traffic, links), in J.
    """

    duration_s: float
    overhead_s: float
    core_s: float
    core_j: float
    home_j: float

    def time_s(self, s: float) -> float:
        """Duration at clock fraction ``s``: the kernel's fixed time and its core work stretch
        (both run on the SMs), time bound by the home memory does not."""
        return max(self.duration_s, (self.overhead_s + self.core_s) / s)

    def energy_j(self, s: float, alpha: float) -> float:
        """Dynamic energy at clock fraction ``s`` (core energy per operation ~ ``s**(alpha-1)``)."""
        return self.core_j * s ** (alpha - 1.0) + self.home_j


def power_shape(cost: OpCost, duration_s: float | None = None) -> PowerShape:
    """The :class:`PowerShape` of ``cost`` (the last traffic level is the home memory)."""
    on_chip = cost.level_s[:-1]
    return PowerShape(
        duration_s=cost.latency_s if duration_s is None else duration_s,
        overhead_s=cost.overhead_s,
        core_s=max(cost.compute_s, *on_chip) if on_chip else cost.compute_s,
        core_j=cost.compute_energy_j + sum(cost.level_energy_j[:-1]),
        home_j=(cost.level_energy_j[-1] if cost.level_energy_j else 0.0) + cost.link_energy_j,
    )


def headroom_w(chip: Chip) -> float:
    """Dynamic power the limit leaves above idle, in W (0 when the chip has no limit)."""
    if chip.power_limit_w is None or chip.power_limit_w <= chip.idle_power_w:
        return 0.0
    return chip.power_limit_w - chip.idle_power_w


def limit_clock(shape: PowerShape, headroom: float, alpha: float) -> float:
    """Clock fraction at which the op draws exactly ``headroom`` W above idle (1 when it
    already does not; ``MIN_CLOCK_FRACTION`` when even that clock draws more)."""
    def over(s: float) -> float:
        return shape.energy_j(s, alpha) - headroom * shape.time_s(s)

    at_full, at_min = over(1.0), over(MIN_CLOCK_FRACTION)
    if not (math.isfinite(at_full) and math.isfinite(at_min)):
        # Bounded inputs keep both finite; say so rather than hand brentq a NaN.
        raise SimulationError(f"power limit: the op's energy above the limit is not finite ({at_full!r} J "
                              f"at full clock, {at_min!r} J at {MIN_CLOCK_FRACTION}; {shape}, "
                              f"headroom {headroom!r} W)")
    if at_full <= 0.0:
        return 1.0
    if shape.core_s <= 0.0 or at_min >= 0.0:
        return MIN_CLOCK_FRACTION
    return float(brentq(over, MIN_CLOCK_FRACTION, 1.0, xtol=1e-9, rtol=1e-9))


def run_limited(
    cost: OpCost, duration_s: float, headroom: float, alpha: float, level_j: float, capacity_j: float
) -> tuple[float, float, float]:
    """Run one op taking ``duration_s`` at full clock through the controller's bucket
    holding ``level_j`` of ``capacity_j``.

    The op runs at full clock while the bucket covers the energy it draws above the
    limit; the rest of its work runs at the clock that draws exactly the limit. An op
    under the limit refills the bucket with the headroom it leaves unused.

    Returns
    -------
    tuple of float
        ``(time_s, dynamic_energy_j, level_j)`` after the op.
    """
    full_j = cost.compute_energy_j + sum(cost.level_energy_j) + cost.link_energy_j
    over = full_j - headroom * duration_s
    if over <= level_j:  # the common case: the shape is only needed to lower the clock
        return duration_s, full_j, min(capacity_j, level_j - over)
    shape = power_shape(cost, duration_s)
    done = level_j / over  # share of the work done before the bucket ran dry
    s = limit_clock(shape, headroom, alpha)
    return (done * duration_s + (1.0 - done) * shape.time_s(s),
            done * full_j + (1.0 - done) * shape.energy_j(s, alpha), 0.0)


def power_limited_s(chip: Chip, cost: OpCost, burst_j: float | None = None,
                    duration_s: float | None = None) -> float:
    """The op's latency under the chip's power limit, in s, when it takes ``duration_s``
    at full clock (default: its standalone latency) and starts with ``burst_j`` in the
    bucket (default: a full bucket, ``burst_energy_j``; 0: clocks already lowered)."""
    duration = cost.latency_s if duration_s is None else duration_s
    headroom = headroom_w(chip)
    if headroom <= 0.0:
        return duration
    burst = chip.burst_energy_j if burst_j is None else burst_j
    alpha, capacity = chip.power_clock_exponent, chip.burst_energy_j
    time_s, _, _ = run_limited(cost, duration, headroom, alpha, burst, capacity)
    return time_s
