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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.model import level_instances
from hwsim.cost.power import headroom_w
from hwsim.mapping.gemm import operand_bytes
from hwsim.mapping.gemm_arrays import GemmCandidates
from hwsim.workload.ops import MatMul

#: Relative slack when pruning by a lower bound: a mapping is skipped only when its time
#: at full clock exceeds the best exact time by more than rounding could explain.
PRUNE_SLACK = 1e-9

Times = tuple[float, float, float]
"""``(sustained_s, full_s, on_chip_s)`` of one mapping (:func:`~hwsim.cost.matmul.mapping_times`)."""


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


def _reuse_reads(op: MatMul, tile_m: int | np.ndarray, tile_n: int | np.ndarray,
                 b_scale: float) -> float | np.ndarray:
    """Read bytes of :func:`~hwsim.mapping.gemm.reuse_traffic` for scalar or array tiles."""
    a, b, _ = operand_bytes(op.m, op.k, op.n, op.dtype, op.batch, op.b_shared)
    if isinstance(tile_m, int) and isinstance(tile_n, int):
        return a * math.ceil(op.n / tile_n) + b * b_scale * math.ceil(op.m / tile_m)
    return a * np.ceil(np.true_divide(op.n, tile_n)) + b * b_scale * np.ceil(np.true_divide(op.m, tile_m))


def _level_s(chip: Chip, name: str, n_bytes: np.ndarray) -> np.ndarray:
    """:func:`~hwsim.cost.model.transfer_time_s` elementwise (its ramp through
    ``math.expm1``, whose last bit numpy's may not share)."""
    spec = chip.memory[name]
    steady = n_bytes / (spec.bandwidth_bytes_per_s * level_instances(chip, name) * spec.achievable_fraction)
    if spec.ramp_s <= 0:
        return steady
    ramp = [spec.ramp_s * -math.expm1(-x / spec.ramp_bytes) if x > 0 else 0.0 for x in n_bytes.tolist()]
    return np.where(n_bytes > 0, steady + np.array(ramp), steady)


def candidate_costs(chip: Chip, op: MatMul, cands: GemmCandidates, *, speedup: float, b_scale: float,
                    outer_tiles: dict[str, tuple[int, int]], compute_energy_j: float) -> CandidateCosts:
    """The ranking's inputs for every candidate (as ``make_cost`` over
    ``gemm_traffic`` would give them, one mapping at a time)."""
    unit = chip.compute_units
    n = len(cands)
    compute_s = cands.compute_cycles / unit.clock_hz / unit.fraction(op.dtype) / speedup
    n_kernels = 1 + (cands.split_k > 1).astype(np.int64)
    overhead_s = n_kernels * chip.kernel_overhead_s
    _, _, c_bytes = operand_bytes(op.m, op.k, op.n, op.dtype, op.batch, op.b_shared)
    names = chip.level_names
    first_shared = next(name for name in names if chip.memory[name].scope == "shared")
    partial = (cands.split_k - 1) * op.batch * op.m * op.n * 4.0  # 0 where there is no split
    level_s, energy = [], np.zeros(n)
    home_bytes = np.zeros(n)
    for i, name in enumerate(names):
        if i == 0:
            reads = _reuse_reads(op, cands.tile_m, cands.tile_n, b_scale)
        elif chip.memory[names[i - 1]].scope == "per_unit":
            tile_m = np.minimum(op.m, cands.tile_m * unit.cluster_size)
            reads = _reuse_reads(op, tile_m, cands.tile_n, b_scale)
        else:
            reads = _reuse_reads(op, *outer_tiles[names[i - 1]], b_scale)
        reads, writes = np.broadcast_to(reads, (n,)), np.full(n, c_bytes)
        if name == first_shared:
            reads, writes = reads + partial, writes + partial
        spec = chip.memory[name]
        moved = reads + writes
        level_s.append(_level_s(chip, name, moved))
        energy = energy + (reads * spec.read_energy_pj_per_byte + writes * spec.write_energy_pj_per_byte) * 1e-12
        home_bytes = moved
    latency_s = overhead_s + np.maximum.reduce([compute_s, *level_s])
    on_chip_s = overhead_s + np.maximum.reduce([compute_s, *level_s[:-1]])
    energy_j = compute_energy_j + energy
    over_j = energy_j - headroom_w(chip) * latency_s
    return CandidateCosts(latency_s, on_chip_s, energy_j, home_bytes, over_j, n_kernels)


def _first_of_minima(index: np.ndarray, keys: list[Callable[[np.ndarray], np.ndarray]]) -> int:
    """The first of ``index`` (in order) whose keys are lexicographically smallest, as
    Python's ``min`` over tuples picks; each key maps the remaining indices to values."""
    for key in keys:
        if index.size == 1:
            break
        values = key(index)
        index = index[values == values.min()]
    return int(index[0])


def pick_mappings(chip: Chip, costs: CandidateCosts, allowed: np.ndarray,
                  times: Callable[[int], Times]) -> tuple[int, int]:
    """Indices of the mapping fastest at full clock and of the mapping fastest under the
    power limit, ranked exactly as :func:`hwsim.cost.matmul._best` ranks the scalar
    records (ties: the keys that follow, then the first). ``times(i)`` gives candidate
    ``i``'s exact times; it is called only where the arrays cannot decide."""
    latency = costs.latency_s
    index = np.flatnonzero(allowed)
    if headroom_w(chip) <= 0.0:
        # No power limit: every time is the standalone latency and energy does not rank.
        keys = [lambda i: latency[i], lambda i: costs.on_chip_s[i], lambda i: costs.home_bytes[i]]
        fast = _first_of_minima(index, keys)
        return fast, fast
    # A full bucket covers what a mapping draws above the limit: it keeps the full clock.
    full = np.where(costs.over_j <= chip.burst_energy_j, latency, np.nan)
    sustained = np.where(costs.over_j <= 0.0, latency, np.nan)

    def exact(i: int) -> None:
        sustained[i], full[i], _ = times(i)

    def settle(values: np.ndarray) -> float:
        # Known values bound the best; the rest are evaluated fastest first until their
        # full-clock latency (a lower bound of both times) exceeds the best known.
        known = values[index]
        best = float(np.nanmin(known)) if not np.isnan(known).all() else math.inf
        for i in index[np.isnan(known)][np.argsort(latency[index][np.isnan(known)], kind="stable")]:
            if latency[i] > best * (1.0 + PRUNE_SLACK):
                break
            exact(int(i))
            best = min(best, float(values[i]))
        return best

    def lazy(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        def key(i: np.ndarray) -> np.ndarray:
            for j in i[np.isnan(values[i])]:
                exact(int(j))
            return values[i]
        return key

    best_full = settle(full)
    fast = _first_of_minima(index[full[index] == best_full], [
        lambda i: costs.on_chip_s[i], lazy(sustained), lambda i: costs.energy_j[i], lambda i: costs.home_bytes[i]])
    best_held = settle(sustained)
    held = _first_of_minima(index[sustained[index] == best_held], [
        lambda i: costs.energy_j[i], lazy(full), lambda i: costs.on_chip_s[i], lambda i: costs.home_bytes[i]])
    return fast, held
