"""Every tensor-core mapping of one GEMM as numpy arrays, one entry per mapping.

The same candidates, in the same order and with the same values bit for bit, as
:func:`hwsim.mapping.gemm.gemm_candidates` lists one :class:`GemmMapping` at a time: the
cost layer (:mod:`hwsim.cost.gemm_arrays`) evaluates them all at once and builds a
record only for the mappings it keeps. Every integer the arrays form stays below 2**53 while
:func:`arrays_are_exact` holds (the callers fall back to the scalar path otherwise), so
int64 and float64 hold it as exactly as Python's ints, and every float is formed by the
same operations in the same order as the scalar code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.arch.model import Chip
from hwsim.dtypes import dtype_bytes
from hwsim.mapping import gemm
from hwsim.mapping.gemm import GemmMapping, _tile_candidates, dtype_cycle_factor, load_trip_cycles

#: Integers the arrays form stay below this: int64 holds them and float64 converts them
#: exactly, so a quotient or product rounds once, as Python's unbounded ints make it.
EXACT_INT_LIMIT = 2**53


def arrays_are_exact(chip: Chip, m: int, k: int, n: int, batch: int) -> bool:
    """Whether the array path applies (a tensor-core chip) and every integer it forms for
    this GEMM is below :data:`EXACT_INT_LIMIT`: tile counts and split-K partial sums (at
    most ``count batch m n``), tile MACs (at most ``max(256, rows) max(256, cols) k``),
    with a factor 8 of headroom (8192^3 is 2**42)."""
    unit = chip.compute_units
    biggest = max(8 * (unit.count + 1) * batch * m * n, 8 * max(256, unit.rows) * max(256, unit.cols) * k,
                  8 * batch * m * k * n)
    return unit.kind == "tensor_core" and biggest < EXACT_INT_LIMIT


@dataclass(frozen=True)
class GemmCandidates:
    """All tensor-core mappings of one GEMM (fields as :class:`GemmMapping`'s), in the
    order :func:`~hwsim.mapping.gemm.gemm_candidates` yields them."""

    tile_m: np.ndarray
    tile_n: np.ndarray
    split_k: np.ndarray
    n_tiles: np.ndarray
    waves: np.ndarray
    compute_cycles: np.ndarray
    """Stall-free cycles on the busiest unit (dtype rate included), float64."""

    def __len__(self) -> int:
        return int(self.tile_m.size)

    def mapping(self, i: int) -> GemmMapping:
        """Candidate ``i`` as the scalar path's record."""
        return GemmMapping(int(self.tile_m[i]), int(self.tile_n[i]), int(self.split_k[i]),
                           int(self.n_tiles[i]), int(self.waves[i]), float(self.compute_cycles[i]))


def _ceil_div(num: int | np.ndarray, den: int | np.ndarray) -> np.ndarray:
    """``math.ceil(num / den)`` elementwise: the float quotient rounded up, as the scalar
    code computes it (not exact integer division: the two agree only below 2**53)."""
    return np.ceil(np.true_divide(num, den)).astype(np.int64)


def tensor_core_candidates(chip: Chip, m: int, k: int, n: int, dtype: str, batch: int = 1) -> GemmCandidates:
    """Every buffer-fitting output tile with every useful split-K, as arrays (see
    :func:`~hwsim.mapping.gemm.gemm_candidates` for the model). Tensor-core chips only."""
    unit = chip.compute_units
    factor = dtype_cycle_factor(unit, dtype, chip.name)
    tiles = np.array(_tile_candidates(chip, dtype), dtype=np.int64).reshape(-1, 2)
    tm_t, tn_t = tiles[:, 0], tiles[:, 1]
    n_tiles_t = batch * _ceil_div(m, tm_t) * _ceil_div(n, tn_t)
    # gemm.MIN_SPLIT_K is read at call time, as the scalar path reads it.
    max_split_t = np.maximum(1, np.minimum(unit.count // n_tiles_t, k // gemm.MIN_SPLIT_K))
    # Splits 1, 2, 4, ... up to max_split: as many as max_split has bits (frexp is exact).
    n_splits_t = np.frexp(max_split_t.astype(np.float64))[1].astype(np.int64)
    owner = np.repeat(np.arange(tiles.shape[0]), n_splits_t)
    first = np.cumsum(n_splits_t) - n_splits_t
    split = np.left_shift(np.int64(1), np.arange(owner.size, dtype=np.int64) - first[owner])
    tm, tn, n_tiles = tm_t[owner], tn_t[owner], n_tiles_t[owner]
    active = n_tiles * split
    waves = _ceil_div(active, unit.count)
    k_slice = _ceil_div(k, split)
    mac_cycles = tm * tn * k_slice / (unit.rows * unit.cols) * factor
    inner = next(iter(chip.memory.values()))
    if inner.scope == "per_unit":
        feed: float | np.ndarray = inner.bandwidth_bytes_per_s / unit.clock_hz
    else:
        feed = inner.bandwidth_bytes_per_s / np.maximum(1, np.minimum(unit.count, active)) / unit.clock_hz
    elem = dtype_bytes(dtype)
    feed_cycles = (tm + tn) * k_slice * elem / feed
    stage_loads = np.ceil(k_slice / max(1, gemm.STAGE_K_BYTES / elem))
    trip_bound = np.ceil(stage_loads / gemm.PIPELINE_STAGES) * load_trip_cycles(chip)
    cycles = waves * np.maximum(np.maximum(mac_cycles, feed_cycles), trip_bound)
    return GemmCandidates(tm, tn, split, n_tiles, waves, cycles)
