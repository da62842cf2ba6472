"""Cost of approximate attention algorithms (:mod:`hwsim.workload.approx_algorithms`).

Each algorithm is counted from its steps, per sequence of the batch, with ``G`` query
heads and ``Gk`` KV heads, ``n`` queries, ``L`` visible keys, ``d`` the query/key and
``dv`` the value width, and ``new`` the keys new to this pass (all ``L`` without a causal
mask; ``min(n, L)`` with one, the older ones living in the algorithm's cache):

- ``topk``: all ``S`` scores (``2 S d`` FLOP per head, ``S`` the exact attention's query-key
  pairs), a quick-select per query (``QUICKSELECT_COMPARES`` per score), softmax and values
  over the ``K`` kept pairs (``2 K dv``); reads Q, K, V, writes O.
- ``linformer``: the new keys and values projected to ``r`` rows (``2 r new (d + dv)`` per KV
  head), then exact attention against them (``2 n r (d + dv)`` per query head): ``4 n r d``
  per head for the attention, as the paper counts. Reads Q, the new K and V, the new
  columns of E and F, and the projected cache (``r (d + dv)`` per KV head), which it holds.
- ``performer``: random features of the queries and new keys (``2 d f`` per row and an
  exponential per feature), the state ``phi(K)^T V`` (``2 f dv`` per new key), the output
  (``2 f dv`` per query) and its normaliser (``2 f`` per query): ``8 n d f`` per head for
  bidirectional self-attention. Reads the random matrix and the ``f (dv + 1)`` state
  per KV head, which is all it holds.
- ``reformer``: per round, a random rotation of every query and new key to ``b / 2``
  dimensions (``d b`` FLOP per row), a sort of the keys by bucket (``log2 L`` compares per
  new key), and attention of each query to its chunk and the previous one (``2 ceil(L / b)``
  keys, times the causal share); rounds are combined by their log-sum-exps. Reads Q once and
  K and V once per round.

Matrix work runs on the matrix units at the sustained rate, element work on the vector
units, in series (separate kernels; no fusion of the steps is assumed).
"""

from __future__ import annotations

import math

from hwsim.arch.model import Chip
from hwsim.cost.approx_attention import QUICKSELECT_COMPARES
from hwsim.cost.model import LevelTraffic, OpCost, make_cost
from hwsim.dtypes import dtype_bytes
from hwsim.workload.approx_algorithms import ApproxAlgorithm
from hwsim.workload.ops import Attention

#: Vector operations per softmax score: scale, max, exponential, sum.
SOFTMAX_OPS = 4.0
#: Kernels each algorithm launches (its steps, unfused).
KERNELS = {"topk": 3, "linformer": 2, "performer": 2, "reformer": 3}


def new_keys(op: Attention) -> int:
    """Keys new to this pass: all of them without a causal mask, else the queries' own."""
    return min(op.q_len, op.kv_len) if op.is_causal else op.kv_len


def topk_kept_pairs(op: Attention, k: int) -> float:
    """Query-key pairs kept when each query keeps its ``k`` largest of those it sees."""
    q, kv = op.q_len, op.kv_len
    if not op.is_causal:
        return float(q * min(k, kv))
    if q > kv:  # more queries than keys: the causal triangle over kv keys
        q = kv
    first = kv - q + 1  # query i (0-based) sees first + i keys
    if k >= kv:
        return float(sum_range(first, kv))
    if k < first:
        return float(q * k)
    return float(sum_range(first, k) + (kv - k) * k)


def sum_range(lo: int, hi: int) -> int:
    """``lo + (lo + 1) + ... + hi`` (0 when ``hi < lo``)."""
    return 0 if hi < lo else (lo + hi) * (hi - lo + 1) // 2


def algorithm_work(op: Attention, algo: ApproxAlgorithm) -> tuple[float, float, float, float, float]:
    """(matrix FLOP, vector ops, bytes read, bytes written, bytes held) of ``op`` over the
    batch, under ``algo`` (module docstring)."""
    b, g, gk = op.batch, op.n_heads, op.n_kv_heads
    n, d, dv = op.q_len, op.head_dim, op.v_dim
    L, new = op.kv_keys, new_keys(op)
    e, ekv = dtype_bytes(op.dtype), op.kv_elem_bytes
    q_read, o_write = op.q_bytes, op.o_bytes
    new_kv = b * gk * new * (d + dv) * ekv
    if algo.kind == "topk":
        pairs = op.n_scores
        kept = topk_kept_pairs(op, algo.k)
        flops = b * g * (2 * pairs * d + 2 * kept * dv)
        ops = b * g * (QUICKSELECT_COMPARES * pairs + SOFTMAX_OPS * kept)
        return flops, ops, q_read + op.kv_bytes, o_write, op.kv_bytes
    if algo.kind == "linformer":
        r = algo.rank
        flops = b * (gk * 2 * r * new * (d + dv) + g * 2 * n * r * (d + dv))
        ops = b * g * SOFTMAX_OPS * n * r
        cache = b * gk * r * (d + dv) * e
        old = cache if new < L else 0.0  # the projected cache of earlier passes
        proj = 2 * r * new * e  # E's and F's columns for the new keys
        return flops, ops, q_read + new_kv + proj + old, o_write + cache, cache
    if algo.kind == "performer":
        f = algo.features
        flops = b * (gk * new * (2 * d * f + 2 * f * dv) + g * n * (2 * d * f + 2 * f * dv + 2 * f))
        ops = b * (gk * new + g * n) * f * 2.0 + b * gk * new * f  # exp and scale, normaliser sum
        state = b * gk * f * (dv + 1) * e
        old = state if new < L else 0.0
        omega = f * d * e
        return flops, ops, q_read + new_kv + omega + old, o_write + state, state
    # reformer
    nb, rounds = algo.buckets, algo.rounds
    share = op.n_scores / (n * L)  # causal masks keep this share of each chunk pair
    seen = min(L, 2 * math.ceil(L / nb)) * share
    flops = b * rounds * ((gk * new + g * n) * d * nb + g * 2 * n * seen * (d + dv))
    sort = b * gk * rounds * new * math.log2(max(L, 2))
    ops = sort + b * g * rounds * n * (SOFTMAX_OPS * seen + 2 * dv)
    rotations = rounds * d * nb // 2 * e
    buckets = b * gk * rounds * L * 2.0  # a 2-byte bucket id per key per round
    return flops, ops, q_read + rounds * op.kv_bytes + rotations + buckets, o_write, op.kv_bytes + buckets


def algorithm_attention_cost(chip: Chip, op: Attention) -> OpCost:
    """Cost of an attention op computed by its ``algorithm`` (module docstring)."""
    algo = op.algorithm
    assert algo is not None
    unit, vec = chip.compute_units, chip.vector_units
    flops, ops, reads, writes, held = algorithm_work(op, algo)
    rate = chip.peak_flops_per_s(op.dtype) * unit.fraction(op.dtype)
    matrix_s = flops / rate
    compute_s = matrix_s + ops / vec.peak_ops_per_s
    traffic = tuple(LevelTraffic(name, reads, writes) for name in chip.level_names)
    energy = (flops / 2 * unit.energy_per_mac_pj.get(op.dtype, 0.0)  # type: ignore[call-overload]
              + ops * vec.energy_per_op_pj) * 1e-12
    return make_cost(chip, flops=flops, compute_cycles=matrix_s * unit.clock_hz * unit.fraction(op.dtype),
                     compute_s=compute_s, traffic=traffic, n_kernels=KERNELS[algo.kind],
                     compute_energy_j=energy, footprint_bytes=held,
                     detail=f"{algo.label()}, {flops:.4g} matrix FLOP, {ops:.4g} vector ops, "
                            f"{KERNELS[algo.kind]} kernels in series")
