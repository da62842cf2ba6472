"""Mapping a (batched) GEMM onto the matrix units of a chip.

Two families, chosen by ``compute_units.kind``:

- ``systolic_array``: the GEMM is cut into folds that fit the rows x cols array for the
  dataflow; folds are spread over ``count`` arrays; each fold costs fill + stream +
  drain cycles exactly as SCALE-Sim counts them (:mod:`hwsim.mapping.systolic`).
- ``tensor_core``: output tiles (multiples of the MMA granule, sized to fit the per-unit
  buffer with a multi-stage pipeline) are spread over ``count`` units in waves, with
  split-K when there are fewer tiles than units. A tile's K loop is as slow as the
  slowest of its MACs, its operand feed and its loads' round trips (Little's law: the
  pipeline keeps ``PIPELINE_STAGES`` stages in flight, each back one home-level latency
  after it was issued).

Everything here is a pure function of (shape, arch); results are small frozen records.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from hwsim.arch.model import Chip, ComputeUnit
from hwsim.dtypes import accumulator_dtype, dtype_bytes
from hwsim.errors import MappingError
from hwsim.mapping.systolic import fold_dims, systolic_fold_cycles, systolic_gemm_cycles

__all__ = [
    "COMPUTE_LIMITS", "EMULATION_DTYPES", "GemmMapping", "compute_limit", "dtype_cycle_factor",
    "emulation_dtype", "fit_tile", "gemm_candidates",
    "map_gemm", "operand_bytes", "reuse_traffic", "systolic_fold_cycles", "systolic_gemm_cycles",
]

#: Pipeline stages a tensor-core kernel keeps in its per-unit buffer (CUTLASS-style
#: multistage mainloop), and the K depth of one stage in bytes (one 128 B line).
PIPELINE_STAGES = 4
STAGE_K_BYTES = 128
#: Smallest K slice worth splitting to (split-K below this costs more than it saves).
MIN_SPLIT_K = 256


@dataclass(frozen=True)
class GemmMapping:
    """How one GEMM is laid onto the matrix units."""

    tile_m: int
    tile_n: int
    split_k: int
    n_tiles: int
    waves: int
    compute_cycles: float
    """Stall-free cycles on the busiest unit (dtype rate included)."""


def dtype_cycle_factor(unit: ComputeUnit, dtype: str, chip_name: str = "") -> float:
    """Cycles per MAC-slot for ``dtype`` relative to one MAC per PE per cycle."""
    rate = unit.flops_per_cycle.get(unit.rate_key(dtype))  # type: ignore[call-overload]
    if not rate:
        supported = ", ".join(unit.flops_per_cycle)
        raise MappingError(
            f"{chip_name or 'arch'}: compute_units do not support {dtype} (supported: {supported})"
        )
    return 2.0 * unit.rows * unit.cols / rate


#: Matrix formats an emulated GEMM falls back to, in order of preference.
EMULATION_DTYPES = ("bf16", "fp16", "fp32")


def emulation_dtype(unit: ComputeUnit, dtype: str) -> str | None:
    """The format a unit without math for ``dtype`` runs it in (``None``: it has the
    math, or none of :data:`EMULATION_DTYPES`)."""
    rates = unit.flops_per_cycle
    if rates.get(unit.rate_key(dtype)):  # type: ignore[call-overload]
        return None
    return next((d for d in EMULATION_DTYPES if rates.get(d)), None)  # type: ignore[call-overload]


def _granule_sizes(granule: int, limit: int) -> list[int]:
    sizes, size = [], granule
    while size <= max(limit, granule):
        sizes.append(size)
        size *= 2
    return sizes


def _tile_candidates(chip: Chip, dtype: str) -> list[tuple[int, int]]:
    """Output tiles that fit the per-unit buffer with a multi-stage pipeline."""
    unit = chip.compute_units
    per_unit = [lvl for lvl in chip.memory.values() if lvl.scope == "per_unit"]
    cap = per_unit[0].capacity_bytes if per_unit else math.inf
    return list(_fitting_tiles(unit.rows, unit.cols, cap, dtype_bytes(dtype), PIPELINE_STAGES, STAGE_K_BYTES))


@functools.lru_cache(maxsize=256)
def _fitting_tiles(rows: int, cols: int, cap: float, elem: float, stages: int,
                   stage_k_bytes: int) -> tuple[tuple[int, int], ...]:
    # A pure function of numbers, asked for by every GEMM: memoised.
    k_depth = max(1, stage_k_bytes / elem)
    tiles = []
    for tm in _granule_sizes(rows, 256):
        for tn in _granule_sizes(cols, 256):
            if stages * (tm + tn) * k_depth * elem <= cap:
                tiles.append((tm, tn))
    return tuple(tiles) or ((rows, cols),)


def _feed_bytes_per_cycle(chip: Chip, active_units: int) -> float:
    """Operand bytes per cycle the innermost buffer delivers to one busy matrix unit: a
    per-unit buffer its own bandwidth; a shared buffer splits its bandwidth over the units
    actually working."""
    unit = chip.compute_units
    inner = next(iter(chip.memory.values()))
    if inner.scope == "per_unit":
        return inner.bandwidth_bytes_per_s / unit.clock_hz
    return inner.bandwidth_bytes_per_s / max(1, min(unit.count, active_units)) / unit.clock_hz


def load_trip_cycles(chip: Chip) -> float:
    """Unit cycles from issuing a stage's operand loads to their arrival: the latency of
    the home level (HBM), where a stand-alone GEMM's operands start."""
    return chip.memory[chip.home_level].latency_s * chip.compute_units.clock_hz


def gemm_candidates(
    chip: Chip, m: int, k: int, n: int, dtype: str, batch: int = 1
) -> list[GemmMapping]:
    """Every legal mapping of a batched GEMM: for systolic arrays the one fold
    schedule; for tensor cores each buffer-fitting tile with each useful split-K."""
    unit = chip.compute_units
    factor = dtype_cycle_factor(unit, dtype, chip.name)
    if unit.kind == "systolic_array":
        cycles, folds = systolic_gemm_cycles(m, k, n, unit.rows, unit.cols, unit.dataflow, unit.count,
                                             batch, unit.stationary_double_buffered)
        tile_m = min(m, unit.rows if unit.dataflow != "weight_stationary" else m)
        return [GemmMapping(tile_m, min(n, unit.cols), 1, folds, math.ceil(folds / unit.count),
                            cycles * factor)]
    elem = dtype_bytes(dtype)
    k_depth = max(1, STAGE_K_BYTES / elem)
    trip_cycles = load_trip_cycles(chip)
    out = []
    for tm, tn in _tile_candidates(chip, dtype):
        n_tiles = batch * math.ceil(m / tm) * math.ceil(n / tn)
        max_split = max(1, min(unit.count // n_tiles, k // MIN_SPLIT_K))
        split = 1
        while split <= max_split:
            waves = math.ceil(n_tiles * split / unit.count)
            # An MMA computes whole granules: a ragged tile pays for its padding.
            k_slice = math.ceil(k / split)
            mac_cycles = tm * tn * k_slice / (unit.rows * unit.cols) * factor
            # A small tile needs more operand bytes per MAC than the unit's buffer can
            # feed: its rate is capped by that bandwidth (efficiency of small tiles).
            feed = _feed_bytes_per_cycle(chip, n_tiles * split)
            feed_cycles = (tm + tn) * k_slice * elem / feed
            # A deep K slice of a small tile waits on its loads: with PIPELINE_STAGES
            # stages in flight, one round trip of the home latency per that many stages.
            trips = math.ceil(math.ceil(k_slice / k_depth) / PIPELINE_STAGES)
            unit_cycles = max(mac_cycles, feed_cycles, trips * trip_cycles)
            out.append(GemmMapping(tm, tn, split, n_tiles, waves, waves * unit_cycles))
            split *= 2
    return out


#: What can hold a GEMM's compute time far above its FLOPs at the units' peak (the
#: ``bound`` of a compute-limited op, docs/conventions.md): too few tiles or folds to give
#: every unit work; tiles or folds mostly padding (the op is smaller than the unit's
#: granule or array); a systolic array's fill and drain (few rows stream per fold); tiles
#: too small for the unit's buffer to feed at full rate, or waiting on their loads (tensor cores).
COMPUTE_LIMITS = ("occupancy", "padding", "fill_drain", "operand_feed")
#: Below this share of the units' peak, a compute-limited op is named by its largest loss.
COMPUTE_EFFICIENCY_FLOOR = 0.5


def compute_limit(chip: Chip, m: int, k: int, n: int, dtype: str, batch: int, mapping: GemmMapping) -> str:
    """``"compute"`` when the mapping keeps the units at least half as busy as the GEMM's
    MACs need at their peak; otherwise its largest loss, one of :data:`COMPUTE_LIMITS`.

    The compute cycles of the busiest unit over the ideal (every PE of every unit doing
    a useful MAC) factor into *occupancy* (units given work in each wave), *padding*
    (useful share of the tiles or folds computed) and what remains: a systolic fold's
    fill and drain, or the operand feed (and load round trips) of a tensor core's small tiles.
    """
    unit = chip.compute_units
    factor = dtype_cycle_factor(unit, dtype, chip.name)
    ideal = batch * m * k * n / (unit.count * unit.rows * unit.cols) * factor
    efficiency = ideal / mapping.compute_cycles if mapping.compute_cycles > 0 else 1.0
    if efficiency >= COMPUTE_EFFICIENCY_FLOOR:
        return "compute"
    occupancy = mapping.n_tiles * mapping.split_k / (mapping.waves * unit.count)
    if unit.kind == "systolic_array":
        rows, cols, _ = fold_dims(m, k, n, unit.dataflow)
        covered = math.ceil(rows / unit.rows) * unit.rows * math.ceil(cols / unit.cols) * unit.cols
        padding = rows * cols / covered
        rest = "fill_drain"
    else:
        padding = batch * m * n / (mapping.n_tiles * mapping.tile_m * mapping.tile_n)
        rest = "operand_feed"
    losses = {"occupancy": occupancy, "padding": padding, rest: efficiency / (occupancy * padding)}
    return min(losses, key=lambda name: losses[name])


def map_gemm(chip: Chip, m: int, k: int, n: int, dtype: str, batch: int = 1) -> GemmMapping:
    """The mapping with the fewest compute cycles (ties: fewest operand re-reads). Used
    inside fused kernels (attention), where traffic is set by the kernel, not the tile;
    a stand-alone GEMM ranks candidates by their full cost (``hwsim.cost``)."""
    def key(g: GemmMapping) -> tuple[float, float]:
        return g.compute_cycles, m * k * math.ceil(n / g.tile_n) + k * n * math.ceil(m / g.tile_m)

    return min(gemm_candidates(chip, m, k, n, dtype, batch), key=key)


def operand_bytes(
    m: int, k: int, n: int, dtype: str, batch: int, b_shared: bool
) -> tuple[float, float, float]:
    """Bytes of A, B and C (C in the accumulator output dtype)."""
    elem = dtype_bytes(dtype)
    a = batch * m * k * elem
    b = (1 if b_shared else batch) * k * n * elem
    c = batch * m * n * dtype_bytes(accumulator_dtype(dtype))
    return a, b, c


def reuse_traffic(
    m: int, k: int, n: int, dtype: str, batch: int, b_shared: bool, tile_m: int, tile_n: int,
    b_scale: float = 1.0,
) -> tuple[float, float]:
    """(read, write) bytes a buffer holding ``tile_m`` x ``tile_n`` output tiles pulls
    from the level outside it: A once per column of tiles, B once per row of tiles
    (B scaled by ``b_scale`` when it is stored compressed, e.g. 2:4 sparse)."""
    a, b, c = operand_bytes(m, k, n, dtype, batch, b_shared)
    reads = a * math.ceil(n / tile_n) + b * b_scale * math.ceil(m / tile_m)
    return reads, c


def fit_tile(
    m: int, k: int, n: int, dtype: str, batch: int, b_shared: bool, cap_bytes: float
) -> tuple[int, int]:
    """Largest output tile whose operands and accumulators fit ``cap_bytes`` (the
    whole problem when it fits), chosen to minimise re-reads from outside."""
    a, b, c = operand_bytes(m, k, n, dtype, batch, b_shared)
    if a + b + c <= cap_bytes:
        return m, n
    elem = dtype_bytes(dtype)
    k_depth = min(k, 256)
    best: tuple[float, int, int] | None = None
    tm = 1
    while True:
        tm_eff = min(tm, m)
        # tn from: tm*tn*4 (accumulators) + 2*(tm + tn)*k_depth*elem <= cap
        room = cap_bytes - 2 * tm_eff * k_depth * elem
        tn = int(room // (4 * tm_eff + 2 * k_depth * elem)) if room > 0 else 0
        tn = min(tn, n)
        if tn >= 1:
            # reuse_traffic's reads, with the operand bytes computed once (b_scale 1)
            reads = a * math.ceil(n / tn) + b * 1.0 * math.ceil(m / tm_eff)
            if best is None or reads < best[0]:
                best = (reads, tm_eff, tn)
        if tm >= m:
            break
        tm *= 2
    return (best[1], best[2]) if best else (1, 1)
