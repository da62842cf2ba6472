"""Does a workload fit a chip's memory? Says what does not fit where, and by how much;
and what running it on this chip will simplify (:func:`costing_warnings`)."""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.arch.system import System
from hwsim.errors import ConfigError, MappingError
from hwsim.mapping.attention import MIN_BLOCK, block_fits, unit_buffer_bytes
from hwsim.mapping.gemm import emulation_dtype
from hwsim.mapping.sparsity import sparse_effect
from hwsim.units import format_bytes
from hwsim.workload.graph import Workload
from hwsim.workload.memory import workspace_allowance_bytes
from hwsim.workload.ops import Attention, MatMul
from hwsim.workload.precision import Precision
from hwsim.workload.quantize import gemm_formats

TIER_SUFFIX = "_tier_bytes"
"""Resident-byte keys of what a placement keeps in an off-chip tier (``nvme_tier_bytes``)."""


def check_placement(workload: Workload, system: System) -> None:
    """Raise :class:`ConfigError` if the plan's placement names a tier the system lacks,
    or puts more bytes per chip in a tier than its ``capacity_bytes``; the message names
    the placement path and the numbers."""
    plan = workload.plan
    if plan is None or not plan.placement:
        return
    problems = []
    for item, shares in plan.placement:
        for tier, share in shares:
            if tier != "device" and system.tier(tier) is None:
                has = ", ".join(["device", *system.tier_names])
                problems.append(f"{system.name}: plan: placement.{item}.{tier}: the system has no tier "
                                f"{tier!r} (has: {has}; share {share:g})")
    for key, placed in workload.resident_bytes.items():
        tier = key.removesuffix(TIER_SUFFIX)
        memory = system.tier(tier) if key.endswith(TIER_SUFFIX) else None
        if memory is not None and placed > memory.capacity_bytes:
            paths = " + ".join(f"placement.{item}.{tier}" for item, shares in plan.placement
                               if tier in dict(shares))
            field = tier if tier in ("host", "external_memory") else f"tiers.{tier}"
            problems.append(f"{system.name}: plan: {paths}: {format_bytes(placed)} per chip exceeds "
                            f"{field}.capacity_bytes {format_bytes(memory.capacity_bytes)}; short by "
                            f"{format_bytes(placed - memory.capacity_bytes)}")
    if problems:
        raise ConfigError(problems)


def placement_warnings(workload: Workload) -> tuple[str, ...]:
    """What a plan's placement simplifies, one line each (``docs/memory_tiers.md``)."""
    plan = workload.plan
    if plan is None or not plan.placement:
        return ()
    lines = []
    tiers = sorted({t for _, shares in plan.placement for t, _ in shares} - {"device", "host"})
    if tiers:
        lines.append(f"placement: transfers to {', '.join(tiers)} run on their own lanes at each tier's "
                     "bandwidth; they do not also occupy the host link")
    if plan.off_chip_shares("weights"):
        lines.append("placement: the embedding and LM head count in the placed weight shares but are read "
                     "from the chip's memory; only the layers' weights stream")
    return tuple(lines)


def check_fit(workload: Workload, chip: Chip) -> None:
    """Raise :class:`MappingError` if the workload's resident bytes (weights, KV cache,
    gradients, optimizer state, saved activations, its own buffers) and the runtime's
    workspace on this chip (:func:`~hwsim.workload.memory.workspace_allowance_bytes`)
    exceed the home memory level."""
    home = chip.home_level
    capacity = chip.level_capacity_bytes(home)
    resident = {k: v for k, v in workload.resident_bytes.items() if not k.endswith(TIER_SUFFIX)}
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


def attention_warnings(workload: Workload, chip: Chip) -> list[str]:
    """A fused attention whose smallest block does not fit the unit's buffer: it is costed
    with that block and no spill traffic (:func:`hwsim.mapping.attention.attention_blocks`)."""
    if chip.compute_units.attention_block is not None:
        return []
    ops = [op for p in workload.passes for s in p.segments for _, op in s.graph.ops()
           if isinstance(op, Attention) and op.impl != "naive"]
    dims = sorted({op.head_dim for op in ops if not block_fits(chip, op, (MIN_BLOCK, MIN_BLOCK))})
    if not dims:
        return []
    return [f"attention: {chip.name}'s per-unit buffer ({unit_buffer_bytes(chip):.0f} B) holds no "
            f"{MIN_BLOCK} x {MIN_BLOCK} fused-attention block at head_dim {', '.join(map(str, dims))}; "
            "costed with that block and no spill traffic"]


def costing_warnings(workload: Workload, chip: Chip) -> tuple[str, ...]:
    """What costing ``workload`` on ``chip`` simplifies without refusing it, one line
    each: a sparsity pattern the chip has no sparsity unit for runs dense (the pruned
    GEMMs at dense speed, their weights read dense); a matrix format it has no math for
    is emulated (:func:`format_warnings`); a fused attention block larger than the buffer
    (:func:`attention_warnings`)."""
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
    return tuple(lines + format_warnings(workload, chip) + attention_warnings(workload, chip))
