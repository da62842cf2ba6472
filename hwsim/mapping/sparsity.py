"""What a chip's sparsity unit makes of a pruned GEMM (pure functions of op and chip).

N:M patterns run at the unit's constant math speed-up (sparse tensor cores) plus a fixed
per-kernel overhead of the sparse path, so the achieved speed-up grows with the GEMM's
size and is below 1 for small ones (as measured on the H100); density-driven
patterns (unstructured, blocks) follow Sparseloop's view: the storage format's metadata
adds bytes and decode work, a skipping unit's time follows the density (down to its
``min_density``, at its ``efficiency``), a gating unit saves energy only. A pattern the
chip has no unit for runs dense (and the result says so, :mod:`hwsim.mapping.fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.arch.model import Chip, DensitySparsity
from hwsim.dtypes import dtype_bytes
from hwsim.workload.ops import MatMul, parse_sparsity


@dataclass(frozen=True)
class SparseEffect:
    """What a sparsity unit does to one GEMM: math speed-up, stored fraction of B (its
    values and metadata over B stored dense, in B's stored format), compute-energy
    factor, and the vector-lane operations that decode its metadata per copy of B loaded.
    Skipped and gated zeros both cost no MAC energy: only the nonzeros' MACs are counted."""

    speedup: float = 1.0
    b_scale: float = 1.0
    energy_scale: float | None = None
    """Compute energy over dense (``None``: divided by the speed-up, as N:M units do)."""
    decode_ops: float = 0.0
    supported: bool = True
    overhead_s: float = 0.0
    """Fixed time the sparse kernel path adds to the GEMM (s), N:M patterns only."""


DENSE = SparseEffect()


def sparse_metadata_bits(unit: DensitySparsity, density: float, k: int, block_elems: int = 1) -> float:
    """Metadata bits per dense element of B in ``unit.format`` (Sparseloop's formats):
    a bitmask bit per position (per block), an index per nonzero (csr, plus a 32-bit
    pointer per row of ``k``), two per nonzero (coo), a run length per nonzero (rle)."""
    per_nonzero = density / block_elems
    if unit.format == "bitmask":
        return 1.0 / block_elems
    if unit.format == "csr":
        return per_nonzero * unit.index_bits + 32.0 / k
    if unit.format == "coo":
        return per_nonzero * 2 * unit.index_bits
    return per_nonzero * unit.index_bits  # rle


def sparse_effect(chip: Chip, op: MatMul) -> SparseEffect:
    """The :class:`SparseEffect` of ``op.sparsity`` on ``chip``; dense (``supported``
    False) when the chip has no unit for the pattern, and plain dense at density 1."""
    if not op.sparsity:
        return DENSE
    spec = parse_sparsity(op.sparsity)
    unit = chip.sparsity
    if spec.kind == "nm":
        if unit is None or spec.key not in unit.patterns:
            return SparseEffect(supported=False)
        pattern = unit.patterns[spec.key]
        meta = pattern.metadata_bits_per_nonzero / 8 / dtype_bytes(op.dtype)
        return SparseEffect(pattern.speedup, spec.density * (1 + meta), overhead_s=pattern.kernel_overhead_s)
    if spec.density >= 1.0:
        return DENSE
    dense_unit = None if unit is None else (
        unit.unstructured if spec.kind == "unstructured" else unit.blocks.get(spec.key))
    if dense_unit is None:
        return SparseEffect(supported=False)
    rows, _, cols = spec.key.partition("x")
    block = int(rows) * int(cols) if spec.kind == "block" else 1
    elem_bits = 8 * dtype_bytes(op.dtype) if op.w_dtype is None else op.weight_bits
    meta = sparse_metadata_bits(dense_unit, spec.density, op.k, block)
    b_scale = (spec.density * elem_bits + meta) / elem_bits
    speedup = 1.0
    if dense_unit.action == "skip":
        speedup = 1 / min(1.0, max(spec.density, dense_unit.min_density) / dense_unit.efficiency)
    decode = dense_unit.decode_ops_per_nonzero * spec.density * op.k * op.n
    return SparseEffect(speedup, b_scale, spec.density, decode)


