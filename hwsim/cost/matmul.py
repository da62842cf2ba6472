"""Cost of GEMMs on matrix units: cycles from the mapping, bytes at every memory level
from the tile each level holds."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.gemm_arrays import candidate_costs, pick_mappings
from hwsim.cost.model import LevelTraffic, OpCost, make_cost
from hwsim.cost.power import headroom_w, power_limited_s
from hwsim.dtypes import dtype_bytes
from hwsim.mapping.gemm import (
    GemmMapping,
    compute_limit,
    dtype_cycle_factor,
    emulation_dtype,
    fit_tile,
    gemm_candidates,
    operand_bytes,
    reuse_traffic,
)
from hwsim.mapping.gemm_arrays import arrays_are_exact, tensor_core_candidates
from hwsim.mapping.sparsity import SparseEffect, sparse_effect
from hwsim.mapping.systolic import systolic_gemm_cycles, systolic_level_bytes
from hwsim.workload.ops import MatMul


def gemm_traffic(
    chip: Chip, op: MatMul, mapping: GemmMapping, outer_tiles: dict[str, tuple[int, int]],
    b_scale: float = 1.0,
) -> tuple[LevelTraffic, ...]:
    """Bytes at every level for a GEMM laid out as ``mapping``.

    The innermost level feeds the units (traffic set by the compute tile); each outer
    level refills the level inside it: a per-unit buffer holds the compute tile (a
    cluster of units multicasts the shared operand), a shared buffer holds the tile in
    ``outer_tiles``. Split-K adds fp32 partial sums written and read back at the
    innermost shared level. Systolic arrays whose innermost level is split into
    SCALE-Sim style scratchpads (``buffer_split``) move what SCALE-Sim counts
    (:func:`hwsim.mapping.systolic.systolic_level_bytes`).
    """
    if chip.compute_units.kind == "systolic_array" and chip.memory[chip.level_names[0]].buffer_split:
        return tuple(LevelTraffic(name, reads, writes) for name, reads, writes in systolic_level_bytes(
            chip, op.m, op.k, op.n, op.dtype, op.batch, op.b_shared, b_scale))
    names = chip.level_names
    first_shared = next(n for n in names if chip.memory[n].scope == "shared")
    out = []
    tile = (mapping.tile_m, mapping.tile_n)
    for i, name in enumerate(names):
        if i > 0:
            inner = names[i - 1]
            if chip.memory[inner].scope == "per_unit":
                tile = (min(op.m, mapping.tile_m * chip.compute_units.cluster_size), mapping.tile_n)
            else:
                tile = outer_tiles[inner]
        reads, writes = reuse_traffic(op.m, op.k, op.n, op.dtype, op.batch, op.b_shared, *tile,
                                      b_scale=b_scale)
        if mapping.split_k > 1 and name == first_shared:
            partial = (mapping.split_k - 1) * op.batch * op.m * op.n * 4.0
            reads, writes = reads + partial, writes + partial
        out.append(LevelTraffic(name, reads, writes))
    return tuple(out)


def emulated(chip: Chip, op: MatMul) -> MatMul | None:
    """The GEMM a chip without math for ``op.dtype`` runs instead (``None``: it has the
    math, or the op may not be emulated): the weights stay stored in their format and are
    dequantized in the kernel, the math runs in
    :func:`~hwsim.mapping.gemm.emulation_dtype`."""
    fallback = emulation_dtype(chip.compute_units, op.dtype) if op.emulate else None
    if fallback is None:
        return None
    return replace(op, dtype=fallback, w_dtype=op.w_dtype or op.dtype,
                   group_size=op.group_size if op.w_dtype else 0, emulate=False)


def dequant_s(chip: Chip, op: MatMul, mapping: GemmMapping) -> tuple[float, float]:
    """(seconds, lane operations) the vector units spend dequantizing B in the kernel:
    every tile row of the output loads and dequantizes its own copy of B's tiles."""
    if op.w_dtype is None:
        return 0.0, 0.0
    vec = chip.vector_units
    copies = 1 if op.b_shared else op.batch
    loads = -(-op.m // mapping.tile_m)
    ops = copies * op.k * op.n * loads * vec.dequant_ops_per_element
    return ops / vec.peak_ops_per_s, ops


def mapping_times(chip: Chip, cost: OpCost) -> tuple[float, float, float]:
    """What one mapping of an op really costs where it runs: ``(sustained_s, full_s,
    on_chip_s)``.

    ``sustained_s`` is its time held to the chip's power limit (deep in a long run, the
    burst allowance spent, a mapping that moves more bytes in the same time draws more
    energy and runs at a lower clock); ``full_s`` its time with the allowance unspent (a
    lone kernel; the same for a mapping under the limit); ``on_chip_s`` its time once the
    engine has prefetched its weights (compute and the levels inside home), which sets
    apart mappings bound by the same home bytes. Each only falls when the chip gets more of
    a resource.
    """
    on_chip_s = cost.overhead_s + max((cost.compute_s, *cost.level_s[:-1]))
    return power_limited_s(chip, cost, burst_j=0.0), power_limited_s(chip, cost), on_chip_s


Ranked = tuple[tuple[float, float, float], OpCost]


def _rank(item: Ranked, full_first: bool, limited: bool) -> tuple[float, ...]:
    (sustained, full, on_chip), cost = item
    # Under a power limit energy is time: what one op draws a later one cannot borrow.
    energy_j = cost.compute_energy_j + sum(cost.level_energy_j) if limited else 0.0
    times = (full, on_chip, sustained, energy_j) if full_first else (sustained, energy_j, full, on_chip)
    return (*times, cost.traffic[-1].bytes)


def _best(candidates: list[Ranked], limited: bool) -> tuple[OpCost, OpCost]:
    """The mapping fastest at full clock and the mapping fastest under the power limit
    (of those, the one drawing the least energy, which a later op may borrow; the first
    becomes the op's cost, the second its ``alternative`` where it is another one;
    ``limited``: the chip has a power limit). Ties go to the fewer home bytes."""
    fast = min(candidates, key=lambda item: _rank(item, True, limited))[1]
    held = min(candidates, key=lambda item: _rank(item, False, limited))[1]
    return fast, held


@dataclass(frozen=True)
class _Shared:
    """What every mapping of one GEMM shares: the sparsity unit's math speedup and B's
    traffic scale (stored fraction, packed width), each shared level's tile, MAC energy
    (J), prefetchable weight bytes, and the sparsity unit's whole effect."""

    speedup: float
    b_scale: float
    outer_tiles: dict[str, tuple[int, int]]
    compute_energy_j: float
    prefetchable_bytes: float
    sparse: SparseEffect


def _shared(chip: Chip, op: MatMul) -> _Shared:
    sparse = sparse_effect(chip, op)
    speedup = sparse.speedup
    # Traffic counts B's elements at the math width: a packed B is that much smaller.
    packed = op.weight_bits / (8 * dtype_bytes(op.dtype)) if op.w_dtype else 1.0
    b_scale = sparse.b_scale * packed
    outer_tiles = {
        name: fit_tile(op.m, op.k, op.n, op.dtype, op.batch, op.b_shared, level.capacity_bytes)
        for name, level in chip.memory.items() if level.scope == "shared"
    }
    macs = op.flops / 2
    energy = macs * chip.compute_units.mac_energy_pj(op.dtype) * 1e-12
    energy = energy / speedup if sparse.energy_scale is None else energy * sparse.energy_scale
    weight = op.b_bytes * sparse.b_scale if op.b_is_weight else 0.0
    return _Shared(speedup, b_scale, outer_tiles, energy, weight, sparse)


def mapping_cost(chip: Chip, op: MatMul, mapping: GemmMapping, shared: _Shared) -> OpCost:
    """The full cost of one mapping of ``op`` (compute, bytes at every level, split-K
    reduction kernel)."""
    unit = chip.compute_units
    detail = (f"tile {mapping.tile_m}x{mapping.tile_n}, split_k {mapping.split_k}, "
              f"{mapping.n_tiles} tiles, {mapping.waves} waves")
    if op.sparsity and not shared.sparse.supported:
        # No sparsity unit for this pattern: the pruned weights run (and are stored) dense.
        detail += f", {op.sparsity} unsupported: dense"
    # Dequantization of packed weights and decoding of sparse metadata run on the vector
    # units, in series with the MMAs of the same kernel; each tile row of the output
    # handles its own copy of B.
    deq_s, deq_ops = dequant_s(chip, op, mapping)
    if op.w_dtype is not None:
        detail += f", {op.w_dtype} weights dequantized ({op.weight_bits:g} bits/weight)"
    if shared.sparse.decode_ops:
        copies = (1 if op.b_shared else op.batch) * -(-op.m // mapping.tile_m)
        deq_ops += shared.sparse.decode_ops * copies
        deq_s += shared.sparse.decode_ops * copies / chip.vector_units.peak_ops_per_s
    return make_cost(
        chip, flops=op.flops, compute_cycles=mapping.compute_cycles / shared.speedup,
        compute_s=mapping.compute_cycles / unit.clock_hz / unit.fraction(op.dtype) / shared.speedup + deq_s,
        traffic=gemm_traffic(chip, op, mapping, shared.outer_tiles, shared.b_scale),
        n_kernels=1 + (mapping.split_k > 1),  # split-K reduces in a second kernel
        compute_energy_j=shared.compute_energy_j + deq_ops * chip.vector_units.energy_per_op_pj * 1e-12,
        prefetchable_bytes=shared.prefetchable_bytes, detail=detail, footprint_bytes=op.min_bytes,
    )


Built = tuple[OpCost, GemmMapping]


def _named(chip: Chip, op: MatMul, fast: Built, held: Built) -> OpCost:
    """The winning cost (``held`` its alternative where it is another mapping), each named
    by what holds its compute time. Named for the winners only: what holds a compute time
    if it is the longest."""
    extra_s = sparse_effect(chip, op).overhead_s if op.sparsity else 0.0

    def named(cost: OpCost, mapping: GemmMapping) -> OpCost:
        cost = replace(cost, compute_limit=compute_limit(chip, op.m, op.k, op.n, op.dtype, op.batch, mapping))
        if extra_s:
            # The sparse kernel path's fixed time: the same for every mapping, so it is
            # added to the winners only (both paths rank the same times).
            cost = replace(cost, overhead_s=cost.overhead_s + extra_s,
                           detail=f"{cost.detail}, {op.sparsity} path +{extra_s * 1e6:.3g} us")
        return cost

    if held[0] is fast[0]:
        return named(*fast)
    return replace(named(*fast), alternative=named(*held))


def matmul_cost(chip: Chip, op: MatMul, fewest_kernels: bool = False) -> OpCost:
    """Cost of a (batched) GEMM: every legal mapping is costed in full (compute, bytes
    at every level, split-K reduction kernel) and ranked by :func:`mapping_times`: the
    fastest at full clock wins, with the fastest under the power limit as its
    alternative; with ``fewest_kernels`` only mappings without split-K compete. 2:4-style
    sparsity applies where the chip has a unit for the pattern.

    On tensor cores all candidates are evaluated as arrays (:mod:`hwsim.cost.gemm_arrays`)
    and only the winners become records; on systolic arrays the one mapping of a plain
    GEMM (no quantized weights, no sparsity) is costed in one pass
    (:func:`systolic_matmul_cost`); either way the result is :func:`matmul_cost_scalar`'s,
    bit for bit.

    Quantized weights (``op.w_dtype``) are read at their stored width and dequantized on
    the vector units, in series with the MMAs of the same kernel; a format the chip has
    no math for runs :func:`emulated` when the op allows it. Both, and sparse metadata
    decode, cost per mapping on the scalar path."""
    fallback = emulated(chip, op)
    if fallback is not None:
        cost = matmul_cost(chip, fallback, fewest_kernels)
        note = f"{op.dtype} emulated at {fallback.dtype}"
        alt = cost.alternative
        return replace(cost, detail=f"{cost.detail}, {note}",
                       alternative=None if alt is None else replace(alt, detail=f"{alt.detail}, {note}"))
    if systolic_fast_path(chip) and op.sparsity is None and op.w_dtype in (None, op.dtype):
        return systolic_matmul_cost(chip, op)
    if not arrays_are_exact(chip, op.m, op.k, op.n, op.batch):
        return matmul_cost_scalar(chip, op, fewest_kernels)
    shared = _shared(chip, op)
    if op.w_dtype is not None or shared.sparse.decode_ops:
        return matmul_cost_scalar(chip, op, fewest_kernels)
    cands = tensor_core_candidates(chip, op.m, op.k, op.n, op.dtype, op.batch)
    costs = candidate_costs(chip, op, cands, speedup=shared.speedup, b_scale=shared.b_scale,
                            outer_tiles=shared.outer_tiles, compute_energy_j=shared.compute_energy_j)
    if not costs.are_finite():
        # A chip built past the loaders (NaN, inf): Python's min over NaN keys keeps the
        # first candidate; the scalar path ranks it so, and check_cost names the value.
        return matmul_cost_scalar(chip, op, fewest_kernels)
    allowed = costs.n_kernels == costs.n_kernels.min() if fewest_kernels else np.ones(len(cands), dtype=bool)
    built: dict[int, Built] = {}

    def record(i: int) -> Built:
        if i not in built:
            mapping = cands.mapping(i)
            built[i] = (mapping_cost(chip, op, mapping, shared), mapping)
        return built[i]

    fast, held = pick_mappings(chip, costs, allowed,
                               lambda i: power_limited_s(chip, record(i)[0], burst_j=0.0),
                               lambda i: power_limited_s(chip, record(i)[0]))
    return _named(chip, op, record(fast), record(held))


def matmul_cost_scalar(chip: Chip, op: MatMul, fewest_kernels: bool = False) -> OpCost:
    """:func:`matmul_cost` one mapping record at a time: the reference the array path
    reproduces, and the path for systolic arrays (one candidate)."""
    shared = _shared(chip, op)
    candidates = []
    mappings = {}
    for mapping in gemm_candidates(chip, op.m, op.k, op.n, op.dtype, op.batch):
        cost = mapping_cost(chip, op, mapping, shared)
        candidates.append((mapping_times(chip, cost), cost))
        mappings[id(cost)] = mapping
    if fewest_kernels:
        fewest = min(c.n_kernels for _, c in candidates)
        candidates = [item for item in candidates if item[1].n_kernels == fewest]
    fast, held = _best(candidates, headroom_w(chip) > 0.0)
    return _named(chip, op, (fast, mappings[id(fast)]), (held, mappings[id(held)]))

# --- systolic arrays: one mapping, costed in one pass ----------------------------------
# A systolic array has a single mapping (its fold schedule), so there is nothing to rank:
# the candidate is the op's cost and its own alternative. matmul_cost_scalar still builds
# the mapping, the shared terms, a cost, times it under the power limit, ranks a list of
# one and copies the winner to name its compute limit; systolic_matmul_cost forms the same
# floats by the same operations in the same order, once (tests/cost/test_systolic_gemm.py
# checks every field against the scalar path). A design-space sweep costs thousands of
# such chips, each once. Under a power limit the scalar path also times the mapping under
# the limit (whose checks this path would skip), and SCALE-Sim scratchpads (buffer_split)
# count bytes their own way: both keep the scalar path.


def systolic_fast_path(chip: Chip) -> bool:
    """Whether :func:`systolic_matmul_cost` gives ``chip``'s GEMM costs: a systolic array
    without a power limit, no SCALE-Sim scratchpads, a shared level (see above)."""
    memory = chip.memory
    return (chip.compute_units.kind == "systolic_array" and headroom_w(chip) <= 0.0
            and not memory[chip.level_names[0]].buffer_split
            and any(level.scope == "shared" for level in memory.values()))


def systolic_matmul_cost(chip: Chip, op: MatMul) -> OpCost:
    """:func:`matmul_cost_scalar` of a plain ``op`` (no sparsity, no quantized
    weights) on a chip that :func:`systolic_fast_path` accepts (``fewest_kernels`` changes nothing: the one
    mapping launches one kernel)."""
    unit = chip.compute_units
    m, k, n, dtype, batch = op.m, op.k, op.n, op.dtype, op.batch
    # What every mapping shares (_shared, first as there; a plain GEMM: dense, unpacked B).
    speedup = b_scale = 1.0
    energy = op.flops / 2 * unit.mac_energy_pj(dtype) * 1e-12
    weight = op.b_bytes if op.b_is_weight else 0.0
    # The one mapping (gemm_candidates' systolic branch).
    factor = dtype_cycle_factor(unit, dtype, chip.name)
    cycles, folds = systolic_gemm_cycles(m, k, n, unit.rows, unit.cols, unit.dataflow, unit.count, batch,
                                         unit.stationary_double_buffered)
    tile_m = min(m, unit.rows if unit.dataflow != "weight_stationary" else m)
    tile_n = min(n, unit.cols)
    mapping = GemmMapping(tile_m, tile_n, 1, folds, math.ceil(folds / unit.count), cycles * factor)
    # Bytes at every level (gemm_traffic; no split-K on an array).
    a, b, c = operand_bytes(m, k, n, dtype, batch, op.b_shared)
    names = chip.level_names
    memory = chip.memory
    traffic = []
    tile = (tile_m, tile_n)
    for i, name in enumerate(names):
        if i > 0:
            inner = memory[names[i - 1]]
            if inner.scope == "per_unit":
                tile = (min(m, tile_m * unit.cluster_size), tile_n)
            else:
                tile = fit_tile(m, k, n, dtype, batch, op.b_shared, inner.capacity_bytes)
        reads = a * math.ceil(n / tile[1]) + b * b_scale * math.ceil(m / tile[0])
        traffic.append(LevelTraffic(name, reads, c))
    detail = f"tile {tile_m}x{tile_n}, split_k 1, {folds} tiles, {mapping.waves} waves"
    return make_cost(
        chip, flops=op.flops, compute_cycles=mapping.compute_cycles / speedup,
        compute_s=mapping.compute_cycles / unit.clock_hz / unit.fraction(dtype) / speedup,
        traffic=tuple(traffic), n_kernels=1, compute_energy_j=energy, prefetchable_bytes=weight,
        detail=detail, footprint_bytes=op.min_bytes,
        compute_limit=compute_limit(chip, m, k, n, dtype, batch, mapping),
    )
