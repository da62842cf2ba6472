"""The cost record of one operator on one chip, and the arithmetic shared by all ops.

An :class:`OpCost` holds what the engine needs (compute time, bytes and time at each
memory level, fixed overhead) and what the result reports (FLOP, stall-free cycles,
bound, energy by component). Times are for the op running alone; the engine decides
overlap (weight prefetch) and contention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.arch.model import Chip, MemoryLevel
from hwsim.errors import SimulationError


@dataclass(frozen=True)
class LevelTraffic:
    """Bytes read from and written to one memory level by one op."""

    level: str
    read_bytes: float
    write_bytes: float

    @property
    def bytes(self) -> float:
        return self.read_bytes + self.write_bytes


@dataclass(frozen=True)
class OpCost:
    """Cost of one operator on one chip when it runs alone.

    Attributes
    ----------
    flops : float
        Useful FLOP (dense-equivalent).
    compute_cycles : float
        Stall-free cycles on the busiest matrix unit (0 for vector-only ops).
    compute_s : float
        Time the compute units (matrix or vector) are busy, in s.
    traffic : tuple of LevelTraffic
        Bytes at every memory level, innermost first.
    level_s : tuple of float
        Time each level needs for its bytes at its achievable bandwidth, in s.
    overhead_s : float
        Fixed kernel launch / dispatch time, in s.
    prefetchable_bytes : float
        Weight bytes at the home level that may be fetched ahead, during the
        previous op.
    compute_energy_j : float
        MAC and vector-op energy, in J.
    level_energy_j : tuple of float
        Energy of each level's traffic, in J.
    detail : str
        The mapping chosen (tile, waves, split), for people.
    """

    flops: float
    compute_cycles: float
    compute_s: float
    traffic: tuple[LevelTraffic, ...]
    level_s: tuple[float, ...]
    overhead_s: float
    prefetchable_bytes: float
    compute_energy_j: float
    level_energy_j: tuple[float, ...]
    detail: str = ""
    n_kernels: int = 1
    """Kernels the op launches."""
    footprint_bytes: float = 0.0
    """Bytes the op keeps live in the level inside home while it runs (what a prefetch
    of the next op's weights must leave room for)."""
    link_energy_j: float = 0.0
    """Energy of the bytes a collective moves over the interconnect, per chip, in J."""
    compute_limit: str = "compute"
    """What holds the compute time when it is the longest: ``compute`` (units busy near
    their peak) or why they are not (``occupancy``, ``padding``, ``fill_drain``,
    ``operand_feed``: :data:`hwsim.mapping.gemm.COMPUTE_LIMITS`)."""
    alternative: OpCost | None = None
    """Another mapping of the op, faster than this one once the power limit holds it (this
    one is the faster at full clock); the engine runs whichever is faster at the power
    controller's state when the op starts (:mod:`hwsim.engine.power`)."""

    @property
    def latency_s(self) -> float:
        """Standalone latency: overhead plus the slowest of compute and every level."""
        return self.overhead_s + max(self.compute_s, *self.level_s)

    @property
    def bound(self) -> str:
        """``overhead`` (fixed kernel time exceeds the work), the memory level that
        limits the op, or, when the compute time is the longest, its
        :attr:`compute_limit` (``compute`` or why the units are underused)."""
        slowest = max(range(len(self.level_s)), key=lambda i: self.level_s[i])
        if self.overhead_s > max(self.compute_s, self.level_s[slowest]):
            return "overhead"
        return self.compute_limit if self.compute_s >= self.level_s[slowest] else self.traffic[slowest].level

    def level_bytes(self, level: str) -> float:
        for t in self.traffic:
            if t.level == level:
                return t.bytes
        return 0.0


def transfer_time_s(spec: MemoryLevel, n_bytes: float, instances: int = 1) -> float:
    """Time to stream ``n_bytes`` through a level of ``instances`` copies (a per-unit level
    has one per compute unit), in s: the bytes at the achievable bandwidth plus the
    ramp-up, which grows with the transfer and saturates at ``ramp_s`` (achieved
    bandwidth rises with transfer size)."""
    steady = n_bytes / (spec.bandwidth_bytes_per_s * instances * spec.achievable_fraction)
    if spec.ramp_s <= 0 or n_bytes <= 0:
        return steady
    return steady + spec.ramp_s * -math.expm1(-n_bytes / spec.ramp_bytes)


def level_instances(chip: Chip, level: str) -> int:
    """Copies of ``level`` on the chip: one per compute unit for a ``per_unit`` level (each
    unit brings its own capacity and bandwidth), else one."""
    return chip.compute_units.count if chip.memory[level].scope == "per_unit" else 1


def level_bandwidth_bytes_per_s(chip: Chip, level: str) -> float:
    """Peak bandwidth of ``level`` over all its copies, in B/s. A ``per_unit`` level's
    ``bandwidth_bytes_per_s`` is one unit's, as its ``capacity_bytes`` is, so that a chip
    with more units has their memories too."""
    return chip.memory[level].bandwidth_bytes_per_s * level_instances(chip, level)


def level_time_s(chip: Chip, level: str, n_bytes: float) -> float:
    """Time to move ``n_bytes`` through ``level`` (all its copies), in s (see
    :func:`transfer_time_s`)."""
    return transfer_time_s(chip.memory[level], n_bytes, level_instances(chip, level))


def traffic_energy_j(chip: Chip, traffic: tuple[LevelTraffic, ...]) -> tuple[float, ...]:
    """Energy of each level's reads and writes, in J."""
    out = []
    for t in traffic:
        spec = chip.memory[t.level]
        pj = t.read_bytes * spec.read_energy_pj_per_byte + t.write_bytes * spec.write_energy_pj_per_byte
        out.append(pj * 1e-12)
    return tuple(out)


def make_cost(
    chip: Chip,
    *,
    flops: float,
    compute_cycles: float,
    compute_s: float,
    traffic: tuple[LevelTraffic, ...],
    n_kernels: float,
    compute_energy_j: float,
    prefetchable_bytes: float = 0.0,
    detail: str = "",
    footprint_bytes: float = 0.0,
    compute_limit: str = "compute",
) -> OpCost:
    """Assemble an :class:`OpCost`, deriving level times and energies from traffic.

    The mapper calls this for every candidate mapping; :func:`check_cost` checks the one
    it keeps (see :func:`hwsim.cost.cost_op`).
    """
    level_s = tuple(level_time_s(chip, t.level, t.bytes) for t in traffic)
    return OpCost(
        flops=flops,
        compute_cycles=compute_cycles,
        compute_s=compute_s,
        traffic=traffic,
        level_s=level_s,
        overhead_s=n_kernels * chip.kernel_overhead_s,
        prefetchable_bytes=prefetchable_bytes,
        compute_energy_j=compute_energy_j,
        level_energy_j=traffic_energy_j(chip, traffic),
        detail=detail,
        n_kernels=int(n_kernels),
        footprint_bytes=footprint_bytes,
        compute_limit=compute_limit,
    )


_SCALARS = ("flops", "compute_cycles", "compute_s", "overhead_s", "prefetchable_bytes", "compute_energy_j",
            "footprint_bytes", "link_energy_j")


def check_cost(cost: OpCost) -> OpCost:
    """``cost`` itself, once every time, byte count, FLOP count and energy in it is known
    to be a finite, non-negative number.

    Raises
    ------
    SimulationError
        Naming each value that is not, and the mapping.
    """
    scalars = (cost.flops, cost.compute_cycles, cost.compute_s, cost.overhead_s, cost.prefetchable_bytes,
               cost.compute_energy_j, cost.footprint_bytes, cost.link_energy_j)
    # A sum is NaN or inf if any term is; the smallest term says whether any is negative.
    moved = [b for t in cost.traffic for b in (t.read_bytes, t.write_bytes)]
    values = (*scalars, *cost.level_s, *cost.level_energy_j, *moved)
    if sum(values) < math.inf and min(values) >= 0.0:
        return cost
    named = list(zip(_SCALARS, scalars, strict=True))
    for t, sec, joule in zip(cost.traffic, cost.level_s, cost.level_energy_j, strict=True):
        named += [(f"{t.level}.read_bytes", t.read_bytes), (f"{t.level}.write_bytes", t.write_bytes),
                  (f"{t.level}_s", sec), (f"{t.level}_j", joule)]
    bad = ", ".join(f"{k}={v!r}" for k, v in named if not 0.0 <= v < math.inf)
    raise SimulationError(f"cost is not finite and non-negative: {bad} (mapping: {cost.detail or 'n/a'})")


def streaming_traffic(chip: Chip, read_bytes: float, write_bytes: float) -> tuple[LevelTraffic, ...]:
    """Traffic of an op that streams its operands once through every level."""
    return tuple(LevelTraffic(name, read_bytes, write_bytes) for name in chip.level_names)
