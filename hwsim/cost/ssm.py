"""Cost of a state-space mixer's own kernels: the causal conv1d and the selective scan.

The conv1d is depthwise (a few taps per channel): vector work streaming its input
once. The scan's work comes from :meth:`SelectiveScan.work`
(:mod:`hwsim.workload.ops_ssm`): its vector operations run on the vector units, the
chunked SSD's matrix products (Mamba-2 prefill) on the matrix units, each costed as
the batched GEMM of activations it is (:func:`hwsim.cost.matmul.matmul_cost`), and its
bytes stream once through every level. The SSD runs as a chain of kernels (chunk
cumsum, chunk state, state passing, chunk-local products, chunk scan), so its matrix
and vector times add rather than overlap.

A serving iteration runs one scan over requests of different lengths
(:func:`scan_batch_cost`): decode requests through the recurrent update, prefill chunks
through the chunked form, their work summed exactly.
"""

from __future__ import annotations

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.attention_batch import attention_batch_cost
from hwsim.cost.matmul import matmul_cost
from hwsim.cost.model import OpCost, make_cost, streaming_traffic
from hwsim.dtypes import dtype_bytes
from hwsim.workload.ops import Attention, MatMul
from hwsim.workload.ops_ssm import CausalConv1d, ScanWork, SelectiveScan, scan_work

#: Kernels of Mamba-2's chunked scan (mamba_ssm ``mamba_chunk_scan_combined``).
SSD_KERNELS = 5


def conv1d_cost(chip: Chip, op: CausalConv1d) -> OpCost:
    """A depthwise causal convolution: its taps on the vector units, its input read
    and its output written once."""
    vec = chip.vector_units
    elem = dtype_bytes(op.dtype)
    read = (op.n_elements + op.channels * (op.kernel + (1 if op.bias else 0))) * elem
    return make_cost(chip, flops=op.flops, compute_cycles=0.0, compute_s=op.flops / vec.peak_ops_per_s,
                     traffic=streaming_traffic(chip, read, op.n_elements * elem), n_kernels=1,
                     compute_energy_j=op.flops * vec.energy_per_op_pj * 1e-12, detail="causal conv1d")


def _work_cost(chip: Chip, op: SelectiveScan, work: ScanWork, n_kernels: int, detail: str) -> OpCost:
    vec = chip.vector_units
    matrix_s = matrix_j = cycles = 0.0
    for batch, m, k, n in work.gemms:
        gemm = matmul_cost(chip, MatMul(m, k, n, op.dtype, batch=batch, b_is_weight=False))
        matrix_s += gemm.compute_s
        matrix_j += gemm.compute_energy_j
        cycles += gemm.compute_cycles
    vector_s = work.vector_ops / vec.peak_ops_per_s
    energy = matrix_j + work.vector_ops * vec.energy_per_op_pj * 1e-12
    return make_cost(chip, flops=work.flops, compute_cycles=cycles, compute_s=matrix_s + vector_s,
                     traffic=streaming_traffic(chip, work.read_bytes, work.write_bytes), n_kernels=n_kernels,
                     compute_energy_j=energy, detail=detail)


def _kernels(op: SelectiveScan, q: np.ndarray) -> int:
    if op.variant == "mamba":
        return 1
    return (SSD_KERNELS if (q > 1).any() else 0) + (1 if (q == 1).any() else 0)


def _detail(op: SelectiveScan, q: np.ndarray) -> str:
    if op.variant == "mamba":
        return f"selective scan, {q.size} sequences x {op.channels} channels x {op.d_state} states"
    parts = []
    if (q > 1).any():
        parts.append(f"chunked SSD (chunks of {op.chunk}) for {int((q > 1).sum())}")
    if (q == 1).any():
        parts.append(f"state update for {int((q == 1).sum())}")
    return "Mamba-2 " + " and ".join(parts) + f" sequences x {op.n_heads} heads"


def scan_cost(chip: Chip, op: SelectiveScan) -> OpCost:
    """Cost of one selective scan over the op's uniform batch."""
    q = np.full(op.batch, op.q_len, dtype=np.int64)
    return _work_cost(chip, op, op.work(), _kernels(op, q), _detail(op, q))


def scan_batch_cost(chip: Chip, template: SelectiveScan, q: np.ndarray, k: np.ndarray) -> OpCost:
    """Cost of one scan over requests with ``q[i]`` new tokens and ``k[i]`` tokens in
    all (a stored state where ``k[i] > q[i]``), with the widths of ``template`` (its
    ``batch``, ``q_len`` and ``prior_state`` are ignored)."""
    q = np.asarray(q, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    work = scan_work(template, q, k > q)
    return _work_cost(chip, template, work, _kernels(template, q), _detail(template, q))


def mixer_batch_cost(chip: Chip, template: Attention | SelectiveScan, q: np.ndarray, k: np.ndarray) -> OpCost:
    """The per-request kernel of a layer's mixer over a serving batch: attention
    (:func:`hwsim.cost.attention_batch.attention_batch_cost`) or a selective scan."""
    if isinstance(template, SelectiveScan):
        return scan_batch_cost(chip, template, q, k)
    return attention_batch_cost(chip, template, q, k)
