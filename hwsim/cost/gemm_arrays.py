"""The costs of every tensor-core mapping of one GEMM as arrays, and the pick of the
fastest (at full clock, and under the power limit) without a record per mapping.

:func:`hwsim.cost.matmul.matmul_cost_scalar` builds an :class:`OpCost` for each
candidate and ranks them all; here each quantity the ranking reads is one numpy array
over the candidates, formed by the same float operations in the same order, so the
pick is the same mapping bit for bit (``tests/cost/test_gemm_arrays.py``). What cannot
be an array cheaply, the clock a mapping settles at under the power limit (a root
search per mapping), is evaluated only for the mappings that can still win: a
mapping's time under the limit is never below its time at full clock, so once one
mapping's exact time is known, every mapping slower than it at full clock is out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.model import level_instances, level_time_s
from hwsim.cost.power import headroom_w
from hwsim.mapping.gemm import operand_bytes
from hwsim.mapping.gemm_arrays import GemmCandidates
from hwsim.workload.ops import MatMul

#: Relative slack when pruning by a lower bound: a mapping is skipped only when its time
#: at full clock exceeds the best exact time by more than rounding could explain.
PRUNE_SLACK = 1e-9

@dataclass(frozen=True)
class CandidateCosts:
    """What the ranking reads of every candidate, one float64 entry per mapping.

    Attributes
    ----------
    latency_s : numpy.ndarray
        Standalone latency (``OpCost.latency_s``), s.
    on_chip_s : numpy.ndarray
        Latency with the home level's time left out, s.
    energy_j : numpy.ndarray
        Dynamic energy (compute plus every level), J.
    home_bytes : numpy.ndarray
        Bytes at the home level (the last tie-break: fewer home bytes).
    over_j : numpy.ndarray
        Energy drawn above the power limit's headroom at full clock, J (what the
        controller's bucket must cover for the mapping to keep the full clock).
    n_kernels : numpy.ndarray
        Kernels launched (2 with a split-K reduction), int.
    """

    latency_s: np.ndarray
    on_chip_s: np.ndarray
    energy_j: np.ndarray
    home_bytes: np.ndarray
    over_j: np.ndarray
    n_kernels: np.ndarray

    def are_finite(self) -> bool:
        """Whether every value the ranking compares is finite (NaN compares unlike a
        number: the scalar path then decides)."""
        return all(bool(np.isfinite(a).all()) for a in (self.latency_s, self.on_chip_s, self.energy_j,
                                                        self.home_bytes, self.over_j))


def _reuse_reads(op: MatMul, a: float, b: float, tile_m: int | np.ndarray, tile_n: int | np.ndarray,
                 b_scale: float) -> float | np.ndarray:
    """Read bytes of :func:`~hwsim.mapping.gemm.reuse_traffic` for scalar or array tiles
    (``a``, ``b``: the bytes of A and B)."""
    if isinstance(tile_m, int) and isinstance(tile_n, int):
        return a * math.ceil(op.n / tile_n) + b * b_scale * math.ceil(op.m / tile_m)
    return a * np.ceil(np.true_divide(op.n, tile_n)) + b * b_scale * np.ceil(np.true_divide(op.m, tile_m))


def _level_s(chip: Chip, name: str, n_bytes: float | np.ndarray) -> float | np.ndarray:
    """:func:`~hwsim.cost.model.level_time_s` for a byte count or an array of them (the
    ramp through ``math.expm1``, whose last bit numpy's may not share)."""
    if not isinstance(n_bytes, np.ndarray):
        return level_time_s(chip, name, n_bytes)
    spec = chip.memory[name]
    steady = n_bytes / (spec.bandwidth_bytes_per_s * level_instances(chip, name) * spec.achievable_fraction)
    if spec.ramp_s <= 0:
        return steady
    ramp = [spec.ramp_s * -math.expm1(-x / spec.ramp_bytes) if x > 0 else 0.0 for x in n_bytes.tolist()]
    return np.where(n_bytes > 0, steady + np.array(ramp), steady)


def candidate_costs(chip: Chip, op: MatMul, cands: GemmCandidates, *, speedup: float, b_scale: float,
                    outer_tiles: dict[str, tuple[int, int]], compute_energy_j: float) -> CandidateCosts:
    """The ranking's inputs for every candidate (as ``make_cost`` over
    ``gemm_traffic`` would give them, one mapping at a time). A level whose bytes do not
    depend on the mapping (one refilled from a shared level's fixed tile) stays a float."""
    unit = chip.compute_units
    n = len(cands)
    compute_s = cands.compute_cycles / unit.clock_hz / unit.fraction(op.dtype) / speedup
    n_kernels = 1 + (cands.split_k > 1).astype(np.int64)
    overhead_s = n_kernels * chip.kernel_overhead_s
    a_bytes, b_bytes, c_bytes = operand_bytes(op.m, op.k, op.n, op.dtype, op.batch, op.b_shared)
    names = chip.level_names
    first_shared = next(name for name in names if chip.memory[name].scope == "shared")
    level_s: list[float | np.ndarray] = []
    energy: float | np.ndarray = 0
    moved: float | np.ndarray = 0.0
    for i, name in enumerate(names):
        if i == 0:
            reads = _reuse_reads(op, a_bytes, b_bytes, cands.tile_m, cands.tile_n, b_scale)
        elif chip.memory[names[i - 1]].scope == "per_unit":
            tile_m = np.minimum(op.m, cands.tile_m * unit.cluster_size)
            reads = _reuse_reads(op, a_bytes, b_bytes, tile_m, cands.tile_n, b_scale)
        else:
            reads = _reuse_reads(op, a_bytes, b_bytes, *outer_tiles[names[i - 1]], b_scale)
        writes: float | np.ndarray = c_bytes
        if name == first_shared:
            partial = (cands.split_k - 1) * op.batch * op.m * op.n * 4.0  # 0 where there is no split
            reads, writes = reads + partial, writes + partial
        spec = chip.memory[name]
        moved = reads + writes
        level_s.append(_level_s(chip, name, moved))
        # In the order sum() adds the scalar path's level energies (0 + e0 + e1 + ...).
        pj = reads * spec.read_energy_pj_per_byte + writes * spec.write_energy_pj_per_byte
        energy = energy + pj * 1e-12
    slowest = functools.reduce(np.maximum, level_s, compute_s)
    latency_s = overhead_s + slowest
    on_chip_s = overhead_s + functools.reduce(np.maximum, level_s[:-1], compute_s)
    energy_j = np.broadcast_to(compute_energy_j + energy, (n,))
    over_j = energy_j - headroom_w(chip) * latency_s
    return CandidateCosts(latency_s, on_chip_s, energy_j, np.broadcast_to(moved, (n,)), over_j, n_kernels)


def _first_of_minima(index: list[int], keys: list[Callable[[int], float]]) -> int:
    """The first of ``index`` (in order) whose keys are lexicographically smallest, as
    Python's ``min`` over tuples picks; a key is evaluated only on the indices still tied."""
    for key in keys:
        if len(index) == 1:
            break
        values = [key(i) for i in index]
        low = min(values)
        index = [i for i, v in zip(index, values, strict=True) if v == low]
    return index[0]


def pick_mappings(chip: Chip, costs: CandidateCosts, allowed: np.ndarray,
                  sustained_of: Callable[[int], float], full_of: Callable[[int], float]) -> tuple[int, int]:
    """Indices of the mapping fastest at full clock and of the mapping fastest under the
    power limit, ranked exactly as :func:`hwsim.cost.matmul._best` ranks the scalar
    records (ties: the keys that follow, then the first). ``sustained_of(i)`` and
    ``full_of(i)`` give candidate ``i``'s exact times under the limit with an empty and
    with a full bucket; they are called only where the arrays cannot decide."""
    # Lists: a few dozen candidates are picked faster in Python than with numpy calls.
    latency, on_chip = costs.latency_s.tolist(), costs.on_chip_s.tolist()
    home, energy, over = costs.home_bytes.tolist(), costs.energy_j.tolist(), costs.over_j.tolist()
    index = np.flatnonzero(allowed).tolist()
    if headroom_w(chip) <= 0.0:
        # No power limit: every time is the standalone latency and energy does not rank.
        fast = _first_of_minima(index, [latency.__getitem__, on_chip.__getitem__, home.__getitem__])
        return fast, fast
    # A full bucket covers what a mapping draws above the limit: it keeps the full clock;
    # an empty one only what draws nothing above it. Elsewhere the time is not known yet.
    burst = chip.burst_energy_j
    full: list[float | None] = [t if o <= burst else None for t, o in zip(latency, over, strict=True)]
    held: list[float | None] = [t if o <= 0.0 else None for t, o in zip(latency, over, strict=True)]

    def exact(values: list[float | None], of: Callable[[int], float]) -> Callable[[int], float]:
        def get(i: int) -> float:
            value = values[i]
            if value is None:
                value = values[i] = of(i)
            return value
        return get

    full_s, held_s = exact(full, full_of), exact(held, sustained_of)

    def best_of(values: list[float | None], get: Callable[[int], float]) -> list[int]:
        # Both times are at least the full-clock latency: evaluate the unknown fastest
        # first, until that lower bound exceeds the best time known.
        known = [value for i in index if (value := values[i]) is not None]
        best: float = min(known) if known else math.inf
        for i in sorted((i for i in index if values[i] is None), key=latency.__getitem__):
            if latency[i] > best * (1.0 + PRUNE_SLACK):
                break
            best = min(best, get(i))
        return [i for i in index if values[i] == best]

    fast = _first_of_minima(best_of(full, full_s), [on_chip.__getitem__, held_s, energy.__getitem__,
                                                    home.__getitem__])
    held_i = _first_of_minima(best_of(held, held_s), [energy.__getitem__, full_s, on_chip.__getitem__,
                                                      home.__getitem__])
    return fast, held_i
