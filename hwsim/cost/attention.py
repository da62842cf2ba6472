"""Cost of fused (flash) and naive attention.

A fused kernel splits the work into units of one query block (``Q_BLOCK`` rows) of one
head, each streaming its head's K and V in ``K_BLOCK``-key blocks. On tensor cores a
unit's time is its key blocks x (the two block products + the softmax exponentials not
hidden under them) plus a pipeline fill (the first Q and K/V tiles arrive after two
memory latencies); units are spread over the matrix units longest first, so causal
masks leave the imbalance they really leave. With fewer units than matrix units each
unit's keys are split over several (split-KV, as FlashDecoding does). Decode-sized queries pack the heads of a
GQA group into one block's rows (they share K and V). Systolic arrays run the two
products as batched GEMMs, or on the vector units where that is faster (decode queries
fill one row of a large array). Off-chip traffic is Q, K, V and O once; inner levels
re-read K and V once per query block. The naive kernel writes the score matrix, reads
it for the softmax, writes and reads it again.
"""

from __future__ import annotations

import heapq
import math

from hwsim.arch.model import Chip
from hwsim.cost.model import LevelTraffic, OpCost, make_cost
from hwsim.dtypes import dtype_bytes
from hwsim.mapping.gemm import dtype_cycle_factor, map_gemm
from hwsim.workload.ops import Attention

#: Query rows and keys per block of a fused attention kernel (FlashAttention's Br, Bc).
Q_BLOCK = 128
K_BLOCK = 128
#: Backward recomputes the scores and does five products instead of two.
BACKWARD_MMA = 2.5
BACKWARD_EXP = 1.0


def _unit_keys(op: Attention) -> tuple[list[int], int]:
    """Keys seen by each work unit of one (batch, kv-head) slice, and the rows per unit."""
    group = op.n_heads // op.n_kv_heads
    if op.q_len * group <= Q_BLOCK or op.q_len < Q_BLOCK:
        # Decode-sized queries: one unit per Q_BLOCK packed rows of the group's queries.
        rows = op.q_len * group
        n_units = math.ceil(rows / Q_BLOCK)
        return [op.kv_keys] * n_units, min(rows, Q_BLOCK)
    keys = []
    for j in range(math.ceil(op.q_len / Q_BLOCK)):
        last_query = min(op.q_len, (j + 1) * Q_BLOCK)
        seen = op.kv_len - op.q_len + last_query if op.is_causal else op.kv_len
        if op.is_causal and (op.window is not None or op.chunk is not None):
            seen -= _skipped_keys(op, op.kv_len - op.q_len + j * Q_BLOCK)
        keys.append(max(1, min(op.kv_len, seen)))
    if op.key_density < 1.0:
        # A block-sparse mask: each query block computes its share of the key blocks.
        keys = [max(1, math.ceil(k * op.key_density)) for k in keys]
    return keys * group, Q_BLOCK


def _skipped_keys(op: Attention, first_pos: int) -> int:
    """Keys before the first one a block whose first query sits at ``first_pos`` sees."""
    if op.window is not None:
        return max(0, first_pos - op.window + 1)
    assert op.chunk is not None
    return (max(first_pos, 0) // op.chunk) * op.chunk


def _makespan(durations: list[float], n_units: int) -> float:
    """Longest-first list schedule of ``durations`` over ``n_units`` identical units."""
    if len(durations) <= n_units:
        return max(durations, default=0.0)
    loads = [0.0] * n_units
    for d in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + d)
    return max(loads)


def _tensor_core_compute_s(chip: Chip, op: Attention) -> float:
    unit, vec = chip.compute_units, chip.vector_units
    factor = dtype_cycle_factor(unit, op.dtype, chip.name)
    keys, rows = _unit_keys(op)
    rows_padded = math.ceil(rows / unit.rows) * unit.rows
    mma_fac, exp_fac = (BACKWARD_MMA, BACKWARD_EXP) if op.backward else (1.0, 1.0)
    exp_rate = vec.exp_per_cycle or vec.flops_per_cycle
    n_units = len(keys) * op.batch * op.n_kv_heads
    # Fewer units than matrix units: split each unit's keys over several (split-KV, as
    # FlashDecoding does); the partial results are combined in a cheap epilogue. A key
    # block is K_BLOCK keys, or the whole slice when a unit gets fewer.
    split = max(1, min(unit.count // n_units, max(keys)))
    chunk = math.ceil(max(keys) / split)
    block_keys = min(K_BLOCK, chunk)
    # Two block products (rows x block_keys x head_dim and x v_dim MACs), at the sustained rate.
    if op.v_head_dim is None:
        mma = 2 * rows_padded * block_keys * op.head_dim / (unit.rows * unit.cols) * factor
    else:
        mma = rows_padded * block_keys * (op.head_dim + op.v_dim) / (unit.rows * unit.cols) * factor
    mma /= unit.fraction(op.dtype)
    exposed_exp = rows * block_keys / exp_rate * (1 - vec.attention_exp_overlap)
    if op.softcap:
        exposed_exp *= 2  # tanh of every score before its exponential
    block_s = (mma * mma_fac + exposed_exp * exp_fac) / unit.clock_hz
    fill_s = 2 * chip.memory[chip.home_level].latency_s
    durations = [fill_s + math.ceil(math.ceil(k / split) / block_keys) * block_s
                 for k in keys] * (op.batch * op.n_kv_heads * split)
    return _makespan(durations, unit.count)


def _systolic_compute_s(chip: Chip, op: Attention) -> float:
    unit = chip.compute_units
    group = op.n_heads // op.n_kv_heads
    keys = max(1, math.ceil(op.n_scores / op.q_len))  # mean keys seen per query
    batch = op.batch * op.n_kv_heads
    qk = map_gemm(chip, op.q_len * group, op.head_dim, keys, op.dtype, batch)
    pv = map_gemm(chip, op.q_len * group, keys, op.v_dim, op.dtype, batch)
    passes = BACKWARD_MMA if op.backward else 1.0
    mma_s = (qk.compute_cycles + pv.compute_cycles) * passes / unit.clock_hz / unit.fraction(op.dtype)
    vec_s = _score_ops(op) * op.batch * op.n_heads * op.n_scores * passes / chip.vector_units.peak_ops_per_s
    # A decode-sized query (a row or a GQA group) fills one row of a large array: the
    # compiler may instead run both products on the vector units, one FMA per lane per
    # cycle (Gaudi's TPCs, a TPU's VPU). The faster of the two is taken.
    macs = op.batch * op.n_heads * op.n_scores * (op.head_dim + op.v_dim) * passes
    on_vector_s = (macs + _score_ops(op) * op.batch * op.n_heads * op.n_scores * passes) \
        / chip.vector_units.peak_ops_per_s
    return min(max(mma_s, vec_s), on_vector_s)


def kv_dequant_ops(chip: Chip, op: Attention, kv_elements: float) -> float:
    """Vector-lane operations that dequantize ``kv_elements`` cached K/V elements stored
    narrower than the kernel's math (an fp8 cache under bf16 attention); 0 otherwise."""
    if op.kv_dtype is None or op.kv_elem_bytes >= dtype_bytes(op.dtype):
        return 0.0
    return kv_elements * chip.vector_units.dequant_ops_per_element


def _score_ops(op: Attention) -> float:
    """Vector operations per score: scale, max, exponential, sum (and the soft cap)."""
    return 4.0 + (4.0 if op.softcap else 0.0)


def attention_cost(chip: Chip, op: Attention) -> OpCost:
    """Cost of one attention kernel (or three, naive) on ``chip``."""
    unit = chip.compute_units
    group = op.n_heads // op.n_kv_heads
    if unit.kind == "tensor_core":
        compute_s = _tensor_core_compute_s(chip, op)
    else:
        compute_s = _systolic_compute_s(chip, op)
    passes = BACKWARD_MMA if op.backward else 1.0
    cycles = compute_s * unit.clock_hz * unit.fraction(op.dtype)
    io = op.min_bytes
    writes = op.o_bytes + ((op.q_bytes + op.o_bytes) if op.backward else 0.0)
    q_blocks = math.ceil(op.q_len / Q_BLOCK)
    # Every query block of every head streams its head's K and V from the level inside
    # home; causal blocks stop at the diagonal (and windows before their start).
    causal_share = op.n_scores / (op.q_len * op.kv_keys)
    inner_reads = io - writes + op.kv_bytes * group * max(q_blocks * causal_share - 1, 0) * passes
    n_kernels = 1
    if op.impl == "naive":
        io += 4 * op.score_bytes * passes
        inner_reads += 2 * op.score_bytes * passes
        writes += 2 * op.score_bytes * passes
        n_kernels = 3
    names = chip.level_names
    traffic = tuple(
        LevelTraffic(name, (io - writes) if name == names[-1] else inner_reads, writes) for name in names
    )
    n_scores = op.batch * op.n_heads * op.n_scores * passes
    # A narrow cache is dequantized as each K/V tile loads (once per query block that
    # streams it), on the vector units, in series with the block products.
    loads = max(q_blocks * causal_share, 1.0) * passes
    deq_ops = kv_dequant_ops(chip, op, op.kv_bytes / op.kv_elem_bytes * loads)
    if deq_ops:
        compute_s += deq_ops / chip.vector_units.peak_ops_per_s
        cycles = compute_s * unit.clock_hz * unit.fraction(op.dtype)
    energy = (op.flops / 2 * unit.energy_per_mac_pj.get(op.dtype, 0.0)  # type: ignore[call-overload]
              + (n_scores * _score_ops(op) + deq_ops) * chip.vector_units.energy_per_op_pj) * 1e-12
    variant = f"{op.variant}, " if op.variant else ""
    if op.window is not None:
        variant += f"window {op.window}, "
    elif op.chunk is not None:
        variant += f"chunk {op.chunk}, "
    return make_cost(chip, flops=op.flops, compute_cycles=cycles, compute_s=compute_s,
                     traffic=traffic, n_kernels=n_kernels, compute_energy_j=energy,
                     footprint_bytes=op.kv_bytes,
                     detail=f"{variant}{op.impl}, {q_blocks} query blocks x "
                            f"{op.batch * op.n_kv_heads} kv heads")
