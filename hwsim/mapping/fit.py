"""Does a workload fit a chip's memory? Says what does not fit where, and by how much;
and what running it on this chip will simplify (:func:`costing_warnings`)."""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.errors import MappingError
from hwsim.mapping.gemm import emulation_dtype
from hwsim.mapping.sparsity import sparse_effect
from hwsim.units import format_bytes
from hwsim.workload.graph import Workload
from hwsim.workload.memory import workspace_allowance_bytes
from hwsim.workload.ops import MatMul
from hwsim.workload.precision import Precision
from hwsim.workload.quantize import gemm_formats


def check_fit(workload: Workload, chip: Chip) -> None:
    """Raise :class:`MappingError` if the workload's resident bytes (weights, KV cache,
    gradients, optimizer state, saved activations, its own buffers) and the runtime's
    workspace on this chip (:func:`~hwsim.workload.memory.workspace_allowance_bytes`)
    exceed the home memory level."""
    home = chip.home_level
    capacity = chip.level_capacity_bytes(home)
    resident = dict(workload.resident_bytes)
    resident["workspace_bytes"] = resident.get("workspace_bytes", 0.0) + workspace_allowance_bytes(capacity)
    need = {k: v for k, v in resident.items() if v > 0}
    total = sum(need.values())
    if total <= capacity:
        return
    parts = " + ".join(f"{format_bytes(v)} of {k.removesuffix('_bytes').replace('_', ' ')}"
                       for k, v in need.items())
    raise MappingError(
        f"{workload.name} ({workload.phase}) needs {parts} = {format_bytes(total)}; "
        f"{chip.name} memory '{home}' holds {format_bytes(capacity)} "
        f"(over by {format_bytes(total - capacity)})"
    )


def _matmuls(workload: Workload) -> list[MatMul]:
    return [op for p in workload.passes for s in p.segments for _, op in s.graph.ops()
            if isinstance(op, MatMul)]


def format_warnings(workload: Workload, chip: Chip) -> list[str]:
    """A GEMM format the chip has no math for, emulated; a native one it states no MAC
    energy for while it does for others (those MACs then cost no energy): one line each."""
    used = {op.dtype for op in _matmuls(workload)}
    lines = _emulated_lines(chip, {op.dtype for op in _matmuls(workload) if op.emulate})
    unit = chip.compute_units
    if unit.energy_per_mac_pj:
        for fmt in sorted(d for d in used if unit.flops_per_cycle.get(unit.rate_key(d))  # type: ignore[call-overload]
                          and unit.rate_key(d) not in unit.energy_per_mac_pj):
            lines.append(f"precision: {chip.name} states no energy_per_mac_pj for {fmt}; its {fmt} MACs "
                         "are counted at no energy (operand traffic is counted)")
    return lines


def precision_warnings(precision: Precision, chip: Chip) -> list[str]:
    """:func:`format_warnings` for the weight GEMMs a precision gives a model."""
    if precision.is_uniform or precision.on_unsupported != "emulate":
        return []
    stored = {precision.weights, precision.embeddings, precision.lm_head, *(d for _, d in precision.layers)}
    return _emulated_lines(chip, {gemm_formats(precision, w)[0] for w in stored})


def _emulated_lines(chip: Chip, formats: set[str]) -> list[str]:
    unit = chip.compute_units
    lines = []
    for fmt in sorted(formats):
        fallback = emulation_dtype(unit, fmt)
        if fallback is None:
            continue  # native, or refused when costed
        lines.append(f"precision: {chip.name} has no {fmt} matrix math (it has "
                     f"{', '.join(chip.supported_dtypes)}); "
                     f"{fmt} GEMMs are emulated: weights stored in {fmt}, dequantized on the vector units "
                     f"({chip.vector_units.dequant_ops_per_element:g} ops/element) and multiplied at the "
                     f"{fallback} rate (precision on_unsupported='refuse' refuses instead)")
    return lines


def costing_warnings(workload: Workload, chip: Chip) -> tuple[str, ...]:
    """What costing ``workload`` on ``chip`` simplifies without refusing it, one line
    each: a sparsity pattern the chip has no sparsity unit for runs dense (the pruned
    GEMMs at dense speed, their weights read dense); a matrix format it has no math for
    is emulated (:func:`format_warnings`)."""
    matmuls = _matmuls(workload)
    lacking = sorted({op.sparsity for op in matmuls
                      if op.sparsity and not sparse_effect(chip, op).supported})
    unit = chip.sparsity
    has = [*unit.patterns, *(["unstructured"] if unit.unstructured else []),
           *(f"block{k}" for k in unit.blocks)] if unit else []
    lines = []
    for pattern in lacking:
        it_has = f"it has {', '.join(has)}" if has else "it has no sparsity unit"
        lines.append(f"sparsity {pattern}: {chip.name} cannot run {pattern} sparse ({it_has}); "
                     "the pruned weight GEMMs run dense")
    return tuple(lines + format_warnings(workload, chip))
