"""Cost of memory-bound operators on the vector units: element-wise kernels, norms,
softmax, loss, embedding gathers, the optimizer update and the fake quantization of
quantization-aware training."""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.cost.model import LevelTraffic, OpCost, make_cost, streaming_traffic
from hwsim.dtypes import dtype_bytes
from hwsim.workload.ops import ELEMENTWISE_KINDS, Elementwise, Embedding, Optimizer
from hwsim.workload.ops_qat import FakeQuant


def _vector_cost(
    chip: Chip, flops: float, traffic: tuple[LevelTraffic, ...], detail: str,
    n_kernels: int = 1, lane_ops: float | None = None,
) -> OpCost:
    """A vector-unit op: time and energy from its lane operations (default: its FLOP)."""
    vec = chip.vector_units
    ops = flops if lane_ops is None else lane_ops
    return make_cost(chip, flops=flops, compute_cycles=0.0, compute_s=ops / vec.peak_ops_per_s,
                     traffic=traffic, n_kernels=n_kernels,
                     compute_energy_j=ops * vec.energy_per_op_pj * 1e-12, detail=detail)


def elementwise_cost(chip: Chip, op: Elementwise) -> OpCost:
    """Stream the inputs in and the outputs out; the ops run on vector units. An ideal
    kernel makes one pass per tensor; the chip's ``vector_kernels`` may say its library
    uses more kernels and passes (unfused eager implementations)."""
    n_read, n_write, _ = ELEMENTWISE_KINDS[op.op_kind]
    size = op.n_elements * dtype_bytes(op.dtype)
    impl = chip.vector_kernels.get(op.op_kind)
    if impl is None:
        return _vector_cost(chip, op.flops,
                            streaming_traffic(chip, n_read * size + op.vector_bytes, n_write * size),
                            op.op_kind)
    lane_ops = None if impl.ops_per_element is None else impl.ops_per_element * op.n_elements
    writes = n_write if impl.writes is None else impl.writes
    reads = max(impl.passes - writes, 0.0)
    # Reads beyond one per input re-read a tensor (or an intermediate just written): the
    # level inside home serves them when the tensor fits there. Writes all reach home
    # (dirty lines are written back).
    names = chip.level_names
    fits = len(names) > 1 and size <= chip.level_capacity_bytes(names[-2])
    home_reads = min(reads, n_read) if fits else reads
    traffic = tuple(
        LevelTraffic(name, (home_reads if name == names[-1] else reads) * size + op.vector_bytes,
                     writes * size)
        for name in names
    )
    detail = f"{op.op_kind}: {impl.kernels} kernels, {impl.passes:g} passes"
    return _vector_cost(chip, op.flops, traffic, detail, impl.kernels, lane_ops)


def embedding_cost(chip: Chip, op: Embedding) -> OpCost:
    """Gather (or scatter-add) only the touched rows of the table."""
    rows = op.n_tokens * op.dim * dtype_bytes(op.dtype)
    reads, writes = (2 * rows, rows) if op.backward else (rows, rows)
    return _vector_cost(chip, op.flops, streaming_traffic(chip, reads, writes),
                        "scatter-add" if op.backward else "gather")


def optimizer_cost(chip: Chip, op: Optimizer) -> OpCost:
    """A fused AdamW: read parameters, gradients, both moments; write three back."""
    p, g, s = (dtype_bytes(d) for d in (op.param_dtype, op.grad_dtype, op.state_dtype))
    reads = op.n_params * (p + g + 2 * s)
    writes = op.n_params * (p + 2 * s)
    return _vector_cost(chip, op.flops, streaming_traffic(chip, reads, writes), "fused AdamW")


def fake_quant_cost(chip: Chip, op: FakeQuant) -> OpCost:
    """Unfused fake quantization (or its straight-through gradient): each kernel streams
    its tensors once through every level (:class:`~hwsim.workload.ops_qat.FakeQuant`
    lists the bytes); each kernel pays the chip's per-kernel overhead."""
    what = f"fake-quant {op.tensor} to {op.target}"
    detail = f"{what}: straight-through gradient" if op.backward else (
        f"{what}: amax, scale, quantize-dequantize ({op.n_scales} scales)")
    return _vector_cost(chip, op.flops, streaming_traffic(chip, op.read_bytes, op.write_bytes), detail,
                        op.n_kernels)
