"""Attention on systolic arrays: the fused dataflow against two batched GEMMs.

Two dataflows compute the same attention (:func:`hwsim.cost.attention.attention_cost`
costs both and keeps the cheaper):

- **fused score-softmax-value** (FLAT, Kao et al. ASPLOS 2023; FlashAttention on a TPU):
  each query block's scores stay on chip; the vector units take a block's softmax while
  the array makes the next block's products, so the time is the larger of the two. K and
  V are re-read from the level inside home once per query block, whose size the buffer
  bounds (:mod:`hwsim.mapping.attention`): a small buffer means many re-reads.
- **two batched GEMMs**: ``Q K^T`` writes the score matrix, a softmax kernel reads and
  rewrites it, ``P V`` reads it: three kernels in series, K and V read once, the scores
  through the innermost level that holds all of them (home when none does).

Both run the products as batched GEMMs (:func:`hwsim.mapping.gemm.map_gemm`) over the
query rows of a GQA group, at the mean keys a query sees. A decode-sized query fills one
row of a large array: the fused kernel may instead run both products on the vector
units, one FMA per lane per cycle (Gaudi's TPCs, a TPU's VPU), whichever is faster.
"""

from __future__ import annotations

import math

from hwsim.arch.model import Chip
from hwsim.mapping.gemm import map_gemm
from hwsim.workload.ops import Attention

#: Backward recomputes the scores and does five products instead of two.
BACKWARD_MMA = 2.5
BACKWARD_EXP = 1.0


def _products_and_softmax_s(chip: Chip, op: Attention) -> tuple[float, float, float]:
    """Time of the two products on the arrays, of the softmax on the vector units, and
    of everything on the vector units, in s."""
    unit, vec = chip.compute_units, chip.vector_units
    group = op.n_heads // op.n_kv_heads
    keys = max(1, math.ceil(op.n_scores / op.q_len))  # mean keys seen per query
    batch = op.batch * op.n_kv_heads
    qk = map_gemm(chip, op.q_len * group, op.head_dim, keys, op.dtype, batch)
    pv = map_gemm(chip, op.q_len * group, keys, op.v_dim, op.dtype, batch)
    passes = BACKWARD_MMA if op.backward else 1.0
    mma_s = (qk.compute_cycles + pv.compute_cycles) * passes / unit.clock_hz / unit.fraction(op.dtype)
    score_ops = vec.score_lane_ops(op.softcap) * op.batch * op.n_heads * op.n_scores * passes
    vec_s = score_ops / vec.peak_ops_per_s
    macs = op.batch * op.n_heads * op.n_scores * (op.head_dim + op.v_dim) * passes
    on_vector_s = (macs + score_ops) / vec.peak_ops_per_s
    return mma_s, vec_s, on_vector_s


def systolic_fused_s(chip: Chip, op: Attention) -> float:
    """Compute time of the fused dataflow: products beside the softmax, or all of it on
    the vector units where that is faster, in s."""
    mma_s, vec_s, on_vector_s = _products_and_softmax_s(chip, op)
    return min(max(mma_s, vec_s), on_vector_s)


def systolic_gemms_s(chip: Chip, op: Attention) -> float:
    """Compute time of two batched GEMMs and the softmax kernel between them, in
    series, in s."""
    mma_s, vec_s, _ = _products_and_softmax_s(chip, op)
    return mma_s + vec_s


def score_level(chip: Chip, op: Attention) -> str:
    """The innermost memory level that holds ``op``'s whole score matrix (home when no
    level inside it does): where two batched GEMMs keep their scores."""
    for name in chip.level_names[:-1]:
        if op.score_bytes <= chip.level_capacity_bytes(name):
            return name
    return chip.home_level
