"""Cost of one attention kernel over a batch of sequences of different lengths.

A serving iteration runs one varlen (paged) attention kernel over every request in the
batch: request ``i`` brings ``q_i`` new tokens that attend to ``k_i`` keys (its cache
plus the new tokens). This is the fused kernel of :mod:`hwsim.cost.attention`, laid out
over the union of every request's work units, vectorised with numpy so an iteration of
hundreds of requests costs microseconds:

- FLOP, bytes and energy are exact sums over the requests;
- on tensor cores the units (query blocks of one KV head of one request) share one
  split-KV factor and key-block size, as one kernel launch does; their makespan over the
  matrix units is the larger of the longest unit and the total work spread evenly (the
  list schedule's lower bound, which it approaches when units far outnumber the
  matrix units; exact when they do not outnumber them);
- on systolic arrays decode requests (one new token) run as one batched product at their
  mean key count, prefill chunks as their own products.

A batch whose requests all have the same lengths is the uniform kernel, costed exactly
by :func:`hwsim.cost.attention.attention_cost` (what ``simulate`` validates).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.attention import K_BLOCK, Q_BLOCK, attention_cost
from hwsim.cost.model import LevelTraffic, OpCost, make_cost
from hwsim.dtypes import dtype_bytes
from hwsim.mapping.gemm import dtype_cycle_factor
from hwsim.workload.ops import Attention

APPROXIMATION = ("attention over requests of different lengths: one varlen kernel whose units' "
                 "makespan is max(longest unit, total work / matrix units)")


def n_scores(q: np.ndarray, k: np.ndarray, is_causal: bool) -> np.ndarray:
    """Query-key pairs each request computes (causal: queries aligned to the end)."""
    q = q.astype(np.float64)
    k = k.astype(np.float64)
    if not is_causal:
        return q * k
    full = np.maximum(k - q, 0.0) * q + q * (q + 1.0) / 2.0
    return np.where(q <= k, full, k * (k + 1.0) / 2.0)


def _units(template: Attention, q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and keys of every work unit of one KV head, over all requests."""
    group = template.n_heads // template.n_kv_heads
    small = (q * group <= Q_BLOCK) | (q < Q_BLOCK)
    rows_list, keys_list = [], []
    if small.any():
        rows = q[small] * group
        n_units = -(-rows // Q_BLOCK)
        rows_list.append(np.repeat(np.minimum(rows, Q_BLOCK), n_units))
        keys_list.append(np.repeat(k[small], n_units))
    for qi, ki in zip(q[~small].tolist(), k[~small].tolist(), strict=True):
        last = np.minimum(qi, (np.arange(-(-qi // Q_BLOCK)) + 1) * Q_BLOCK)
        seen = ki - qi + last if template.is_causal else np.full(last.shape, ki)
        keys = np.maximum(1, np.minimum(ki, seen))
        keys_list.append(np.tile(keys, group))
        rows_list.append(np.full(keys.size * group, Q_BLOCK))
    return np.concatenate(rows_list), np.concatenate(keys_list)


def _tensor_core_s(chip: Chip, template: Attention, q: np.ndarray, k: np.ndarray) -> float:
    unit, vec = chip.compute_units, chip.vector_units
    factor = dtype_cycle_factor(unit, template.dtype, chip.name)
    rows, keys = _units(template, q, k)
    n_units = rows.size * template.n_kv_heads
    max_keys = int(keys.max())
    split = max(1, min(unit.count // n_units, max_keys))
    block_keys = min(K_BLOCK, math.ceil(max_keys / split))
    rows_padded = -(-rows // unit.rows) * unit.rows
    mma = 2.0 * rows_padded * block_keys * template.head_dim / (unit.rows * unit.cols) * factor
    mma /= unit.fraction(template.dtype)
    exp_rate = vec.exp_per_cycle or vec.flops_per_cycle
    exposed = rows * block_keys / exp_rate * (1 - vec.attention_exp_overlap)
    block_s = (mma + exposed) / unit.clock_hz
    fill_s = 2 * chip.memory[chip.home_level].latency_s
    durations = fill_s + np.ceil(np.ceil(keys / split) / block_keys) * block_s
    copies = template.n_kv_heads * split
    if durations.size * copies <= unit.count:
        return float(durations.max())
    return max(float(durations.max()), float(durations.sum()) * copies / unit.count)


def _systolic_s(chip: Chip, template: Attention, q: np.ndarray, k: np.ndarray) -> float:
    from hwsim.cost.attention import _systolic_compute_s

    decode = q == 1
    total = 0.0
    if decode.any():
        mean_k = math.ceil(float(k[decode].mean()))
        op = replace(template, batch=int(decode.sum()), q_len=1, kv_len=mean_k)
        total += _systolic_compute_s(chip, op)
    pairs, counts = np.unique(np.stack([q[~decode], k[~decode]], axis=1), axis=0, return_counts=True)
    for (qi, ki), c in zip(pairs.tolist(), counts.tolist(), strict=True):
        total += _systolic_compute_s(chip, replace(template, batch=c, q_len=qi, kv_len=ki))
    return total


def attention_batch_cost(chip: Chip, template: Attention, q: np.ndarray, k: np.ndarray) -> OpCost:
    """Cost of one attention kernel over requests with ``q[i]`` new tokens attending to
    ``k[i]`` keys, with the heads, head size, mask, dtype and kernel of ``template``.

    Parameters
    ----------
    chip : Chip
    template : Attention
        The layer's attention (its ``batch``, ``q_len`` and ``kv_len`` are ignored).
    q, k : numpy.ndarray of int
        New tokens and attended keys of each request (``1 <= q``, ``1 <= k``).
    """
    q = np.asarray(q, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    if q.size and (q == q[0]).all() and (k == k[0]).all():
        return attention_cost(chip, replace(template, batch=int(q.size), q_len=int(q[0]), kv_len=int(k[0])))
    unit = chip.compute_units
    elem = dtype_bytes(template.dtype)
    hd, n_h, n_kv = template.head_dim, template.n_heads, template.n_kv_heads
    group = n_h // n_kv
    scores = n_scores(q, k, template.is_causal)
    flops = 4.0 * n_h * float(scores.sum()) * hd
    qo_bytes = n_h * float(q.sum()) * hd * elem
    kv_each = 2.0 * n_kv * k.astype(np.float64) * hd * elem
    kv_bytes = float(kv_each.sum())
    io = 2.0 * qo_bytes + kv_bytes
    writes = qo_bytes
    q_blocks = -(-q // Q_BLOCK)
    share = scores / (q.astype(np.float64) * k)
    inner_reads = io - writes + float((kv_each * group * np.maximum(q_blocks * share - 1.0, 0.0)).sum())
    n_kernels = 1
    if template.impl == "naive":
        score_bytes = n_h * float(scores.sum()) * elem
        io += 4 * score_bytes
        inner_reads += 2 * score_bytes
        writes += 2 * score_bytes
        n_kernels = 3
    if unit.kind == "tensor_core":
        compute_s = _tensor_core_s(chip, template, q, k)
    else:
        compute_s = _systolic_s(chip, template, q, k)
    names = chip.level_names
    traffic = tuple(LevelTraffic(name, (io - writes) if name == names[-1] else inner_reads, writes)
                    for name in names)
    energy = (flops / 2 * unit.energy_per_mac_pj.get(template.dtype, 0.0)  # type: ignore[call-overload]
              + n_h * float(scores.sum()) * 4 * chip.vector_units.energy_per_op_pj) * 1e-12
    cycles = compute_s * unit.clock_hz * unit.fraction(template.dtype)
    return make_cost(chip, flops=flops, compute_cycles=cycles, compute_s=compute_s, traffic=traffic,
                     n_kernels=n_kernels, compute_energy_j=energy, footprint_bytes=kv_bytes,
                     detail=f"{template.impl} varlen, {q.size} requests x {n_kv} kv heads")
