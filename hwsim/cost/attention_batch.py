"""Cost of one attention kernel over a batch of sequences of different lengths.

A serving iteration runs one varlen (paged) attention kernel over every request in the
batch: request ``i`` brings ``q_i`` new tokens that attend to ``k_i`` keys (its cache
plus the new tokens). This is the fused kernel of :mod:`hwsim.cost.attention` laid out
over the union of every request's work units, with the same structure (windows, chunks,
MLA's latent keys, soft-capping) the layer's :class:`Attention` template carries:

- decode requests (one new token: most of a serving batch) are vectorised with numpy;
  prefill chunks, few per iteration, are costed through the scalar op's own counts;
- FLOP, bytes and energy are exact sums over the requests;
- the kernel's block (query rows x keys) is the one the uniform kernel at the batch's
  mean lengths keeps (:func:`hwsim.cost.attention.cheapest_block`);
- on tensor cores the units (query blocks of one KV head of one request) share one
  split-KV factor and key-block size, as one kernel launch does; their makespan over
  the matrix units is the larger of the longest unit and the total work spread evenly
  (the list schedule's lower bound, which it approaches when units far outnumber the
  matrix units; exact when they do not outnumber them);
- on systolic arrays (the fused dataflow) decode requests run as one batched product at
  their mean key count, prefill chunks as their own products.

A batch whose requests all have the same lengths is the uniform kernel, costed exactly
by :func:`hwsim.cost.attention.attention_cost` (what ``simulate`` validates).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.attention import (
    _unit_keys,
    attention_cost,
    cheapest_block,
    kv_dequant_ops,
    score_block_cycles,
)
from hwsim.cost.attention_systolic import systolic_fused_s
from hwsim.cost.model import LevelTraffic, OpCost, make_cost
from hwsim.dtypes import dtype_bytes
from hwsim.mapping.gemm import dtype_cycle_factor
from hwsim.workload.ops import Attention

APPROXIMATION = ("attention over requests of different lengths: one varlen kernel whose units' "
                 "makespan is max(longest unit, total work / matrix units)")


def decode_keys(template: Attention, k: np.ndarray) -> np.ndarray:
    """Keys a single new query at the end of ``k`` cached-plus-new tokens reads (under a
    block-sparse mask, its share of them)."""
    keys = _decode_keys(template, k)
    if template.key_density >= 1.0:
        return keys
    return np.maximum(1, np.ceil(keys * template.key_density)).astype(keys.dtype)


def _decode_keys(template: Attention, k: np.ndarray) -> np.ndarray:
    if not template.is_causal:
        return k
    if template.window is not None:
        return np.minimum(k, template.window)
    if template.chunk is not None:
        return k - ((k - 1) // template.chunk) * template.chunk
    return k


def _kv_width(template: Attention) -> int:
    """Elements of K and V cached per key and KV head."""
    if template.v_head_dim is None and not template.latent_kv:
        return 2 * template.head_dim
    return template.head_dim if template.latent_kv else template.head_dim + template.v_dim


class _Sums:
    """Per-kernel totals accumulated over requests."""

    def __init__(self) -> None:
        self.scores = self.q_tokens = self.kv_keys = self.extra_inner = 0.0
        self.rows: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []


def _decode_part(template: Attention, k: np.ndarray, sums: _Sums, q_block: int) -> None:
    group = template.n_heads // template.n_kv_heads
    keys = decode_keys(template, k)
    sums.scores += float(keys.sum())
    sums.q_tokens += float(k.size)
    sums.kv_keys += float(keys.sum())
    n_units = -(-group // q_block)
    sums.rows.append(np.full(keys.size * n_units, min(group, q_block)))
    sums.keys.append(np.repeat(keys, n_units))


def _prefill_part(template: Attention, q: np.ndarray, k: np.ndarray, sums: _Sums,
                  kv_key_bytes: float, q_block: int) -> None:
    group = template.n_heads // template.n_kv_heads
    for qi, ki in zip(q.tolist(), k.tolist(), strict=True):
        op = replace(template, batch=1, q_len=qi, kv_len=ki)
        scores, kv_keys = op.n_scores, op.kv_keys
        sums.scores += scores
        sums.q_tokens += qi
        sums.kv_keys += kv_keys
        share = scores / (qi * kv_keys)
        kv_bytes = template.n_kv_heads * kv_keys * kv_key_bytes
        sums.extra_inner += kv_bytes * group * max(math.ceil(qi / q_block) * share - 1, 0)
        keys, rows = _unit_keys(op, q_block)
        sums.keys.append(np.asarray(keys))
        sums.rows.append(np.full(len(keys), rows))


def _tensor_core_s(chip: Chip, template: Attention, sums: _Sums, key_block: int) -> float:
    unit, vec = chip.compute_units, chip.vector_units
    factor = dtype_cycle_factor(unit, template.dtype, chip.name)
    rows, keys = np.concatenate(sums.rows), np.concatenate(sums.keys)
    n_units = rows.size * template.n_kv_heads
    max_keys = int(keys.max())
    split = max(1, min(unit.count // n_units, max_keys))
    block_keys = min(key_block, math.ceil(max_keys / split))
    rows_padded = -(-rows // unit.rows) * unit.rows
    dims = 2 * template.head_dim if template.v_head_dim is None else template.head_dim + template.v_dim
    mma = rows_padded * block_keys * dims / (unit.rows * unit.cols) * factor / unit.fraction(template.dtype)
    exps = rows * block_keys / vec.exp_per_cycle_per_unit * (2 if template.softcap else 1)
    block_s = score_block_cycles(chip, mma, exps) / unit.clock_hz
    fill_s = 2 * chip.memory[chip.home_level].latency_s
    durations = fill_s + np.ceil(np.ceil(keys / split) / block_keys) * block_s
    copies = template.n_kv_heads * split
    if durations.size * copies <= unit.count:
        return float(durations.max())
    return max(float(durations.max()), float(durations.sum()) * copies / unit.count)


def _systolic_s(chip: Chip, template: Attention, q: np.ndarray, k: np.ndarray) -> float:
    decode = q == 1
    total = 0.0
    if decode.any():
        mean_k = math.ceil(float(k[decode].mean()))
        total += systolic_fused_s(chip, replace(template, batch=int(decode.sum()), q_len=1, kv_len=mean_k))
    for qi, ki in zip(q[~decode].tolist(), k[~decode].tolist(), strict=True):
        total += systolic_fused_s(chip, replace(template, batch=1, q_len=qi, kv_len=ki))
    return total


def attention_batch_cost(chip: Chip, template: Attention, q: np.ndarray, k: np.ndarray) -> OpCost:
    """Cost of one attention kernel over requests with ``q[i]`` new tokens attending to
    ``k[i]`` keys, with the heads, head sizes, mask, structure, dtype and kernel of
    ``template`` (its ``batch``, ``q_len`` and ``kv_len`` are ignored).

    Parameters
    ----------
    chip : Chip
    template : Attention
    q, k : numpy.ndarray of int
        New tokens and attended keys of each request (``1 <= q <= k``).
    """
    q = np.asarray(q, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    if q.size and (q == q[0]).all() and (k == k[0]).all():
        return attention_cost(chip, replace(template, batch=int(q.size), q_len=int(q[0]), kv_len=int(k[0])))
    unit = chip.compute_units
    elem = dtype_bytes(template.dtype)
    kv_key_bytes = _kv_width(template) * template.kv_elem_bytes
    decode = q == 1
    sums = _Sums()
    # One launch has one block: the one the uniform kernel at the batch's mean lengths keeps.
    mean = template if not q.size else replace(
        template, batch=int(q.size), q_len=max(1, round(float(q.mean()))),
        kv_len=max(1, round(float(k.mean()))))
    q_block, key_block = cheapest_block(chip, mean)
    if decode.any():
        _decode_part(template, k[decode], sums, q_block)
    if not decode.all():
        _prefill_part(template, q[~decode], k[~decode], sums, kv_key_bytes, q_block)
    n_h = template.n_heads
    if template.v_head_dim is None:
        flops = 4.0 * n_h * sums.scores * template.head_dim
    else:
        flops = 2.0 * n_h * sums.scores * (template.head_dim + template.v_dim)
    q_bytes = n_h * sums.q_tokens * template.head_dim * elem
    o_bytes = n_h * sums.q_tokens * template.v_dim * elem
    kv_bytes = template.n_kv_heads * sums.kv_keys * kv_key_bytes
    io = q_bytes + o_bytes + kv_bytes
    writes = o_bytes
    inner_reads = io - writes + sums.extra_inner
    n_kernels = 1
    if template.impl == "naive":
        score_bytes = n_h * sums.scores * elem
        io += 4 * score_bytes
        inner_reads += 2 * score_bytes
        writes += 2 * score_bytes
        n_kernels = 3
    if unit.kind == "tensor_core":
        compute_s = _tensor_core_s(chip, template, sums, key_block)
    else:
        compute_s = _systolic_s(chip, template, q, k)
    names = chip.level_names
    traffic = tuple(LevelTraffic(name, (io - writes) if name == names[-1] else inner_reads, writes)
                    for name in names)
    # A narrow cache is dequantized as its tiles load (decodes load each once).
    deq_ops = kv_dequant_ops(chip, template, kv_bytes / template.kv_elem_bytes)
    compute_s += deq_ops / chip.vector_units.peak_ops_per_s
    vector_ops = n_h * sums.scores * chip.vector_units.score_energy_ops(template.softcap) + deq_ops
    energy = (flops / 2 * unit.energy_per_mac_pj.get(template.dtype, 0.0)  # type: ignore[call-overload]
              + vector_ops * chip.vector_units.energy_per_op_pj) * 1e-12
    cycles = compute_s * unit.clock_hz * unit.fraction(template.dtype)
    return make_cost(chip, flops=flops, compute_cycles=cycles, compute_s=compute_s, traffic=traffic,
                     n_kernels=n_kernels, compute_energy_j=energy, footprint_bytes=kv_bytes,
                     detail=f"{template.variant + ', ' if template.variant else ''}{template.impl} varlen, "
                            f"{q.size} requests x {template.n_kv_heads} kv heads")
