"""Cost of approximate attention (SpAtten, A3, ELSA, Sanger; :mod:`hwsim.workload.pruning`).

The kept work is a smaller dense attention, costed by
:func:`hwsim.cost.attention.attention_cost`: ``token_keep`` of the keys (and of the
queries when a pass has many, as cascade token pruning removes whole tokens), whole
``head_keep`` of the KV heads with their query heads, and ``score_keep`` of the kept keys
scored exactly per query. Progressive quantization reads the kept K and V at
``msb_bits`` and a ``refetch_fraction`` of them again at ``lsb_bits``, recomputing those
rows. The selection unit's own work is counted from its algorithm, in element operations
on the chip's vector units (the selection engine of each preset is its vector unit), and
the bytes it reads:

- ``topk`` (SpAtten): one add per kept score to accumulate token importance, and a
  quick-select over the tokens (``QUICKSELECT_COMPARES`` comparisons per element, the
  expected count for a median) and over the heads, per sequence.
- ``a3``: a sort of each head's key columns (``d n log2 n`` comparisons, redone per
  input since self-attention keys change) and a greedy search that walks
  ``search_fraction`` of the keys, ``d + 1`` operations per step per query; it reads the
  sorted keys and their 2-byte indices.
- ``elsa``: a ``hash_bits``-bit sign random projection of every key and query (``d``
  MACs per bit) and per query-key pair a Hamming distance (one op per 16 bits), a
  cosine look-up times the key norm and a threshold compare (``ELSA_PAIR_OPS``); it
  reads the hashes and a 2-byte norm per key.
- ``sanger``: the score matrix predicted at ``predict_bits`` and thresholded into the
  mask on the matrix units (at the int8 rate scaled by 8 / bits: Sanger's dense low-bit
  mask array), one pack operation per score on the vector units; it reads Q and K at
  ``predict_bits``.

By default the selection runs before the kept keys are known and its time adds to the
kept work's (separate kernels on a GPU), and a selection with work on both unit kinds
(Sanger's prediction and pack) runs them one after the other. With
``selection_overlapped`` the selection is a pipeline of its own (the research designs'
engines): its matrix-unit and vector-unit stages overlap each other and the kept work,
so the longest of the three counts (Sanger's mask array and pack module are separate
modules feeding the sparse PE array: hatsu3/Sanger README, ``mask.scala``,
``pack.scala``), its energy still paid. Nothing pruned, filtered or quantized gives :func:`attention_cost`
exactly.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hwsim.arch.model import Chip
from hwsim.cost.attention import attention_cost
from hwsim.cost.model import LevelTraffic, OpCost, make_cost
from hwsim.dtypes import dtype_bytes
from hwsim.workload.ops import Attention
from hwsim.workload.pruning import AttentionApprox

#: Expected comparisons per element of a quick-select for the median (2 + 2 ln 2).
QUICKSELECT_COMPARES = 2.0 + 2.0 * math.log(2.0)
#: ELSA per query-key pair beyond the Hamming distance: cosine look-up x norm, compare.
ELSA_PAIR_OPS = 2.0
#: Bytes of an index (A3's sorted-column positions) and of a key norm (ELSA), fp16.
INDEX_BYTES = 2.0
NORM_BYTES = 2.0


def _scalars(a: AttentionApprox) -> tuple[float, float]:
    """This op's token and head fractions (one layer's: never per-layer tuples)."""
    token_keep, head_keep = a.token_keep, a.head_keep
    assert not isinstance(token_keep, tuple) and not isinstance(head_keep, tuple), "per-layer values"
    return float(token_keep), float(head_keep)


def kept_attention(op: Attention) -> Attention:
    """The dense attention left after token, head and candidate pruning (``approx``
    removed); at least one key, query and head survives."""
    a = op.approx
    assert a is not None
    token_keep, head_keep = _scalars(a)
    group = op.n_heads // op.n_kv_heads
    kv_heads = max(1, math.ceil(op.n_kv_heads * head_keep))
    kv = max(1, math.ceil(op.kv_len * token_keep * a.score_keep))
    q = op.q_len if op.q_len == 1 else max(1, math.ceil(op.q_len * token_keep))
    return replace(op, approx=None, n_heads=kv_heads * group, n_kv_heads=kv_heads, q_len=min(q, kv)
                   if op.is_causal else q, kv_len=kv)


def _selection(chip: Chip, op: Attention, a: AttentionApprox) -> tuple[float, float, float]:
    """(vector operations, matrix-unit seconds, bytes read) of the selection unit."""
    if a.selection == "none" or (not a.prunes_tokens and a.score_keep == 1.0):
        return 0.0, 0.0, 0.0
    token_keep, head_keep = _scalars(a)
    d, b = op.head_dim, op.batch
    tokens = max(1, math.ceil(op.kv_len * token_keep))  # what survived earlier layers
    heads = max(1, math.ceil(op.n_heads * head_keep))
    kv_heads = max(1, math.ceil(op.n_kv_heads * head_keep))
    queries = op.q_len if op.q_len == 1 else max(1, math.ceil(op.q_len * token_keep))
    pairs = b * heads * queries * tokens * (op.n_scores / (op.q_len * op.kv_len))  # causal share
    elem = dtype_bytes(op.dtype)
    if a.selection == "topk":
        ops = pairs + b * QUICKSELECT_COMPARES * (tokens + op.n_heads)
        return ops, 0.0, 0.0
    if a.selection == "a3":
        steps = math.ceil(a.search_fraction * tokens)
        sort_ops = b * kv_heads * d * tokens * math.log2(max(tokens, 2))
        search_ops = b * heads * queries * steps * (d + 1)
        read = b * kv_heads * tokens * d * (elem + INDEX_BYTES)
        return sort_ops + search_ops, 0.0, read
    if a.selection == "elsa":
        hash_ops = b * (kv_heads * tokens + heads * queries) * a.hash_bits * d
        pair_ops = pairs * (math.ceil(a.hash_bits / 16) + ELSA_PAIR_OPS)
        read = b * kv_heads * tokens * (a.hash_bits / 8 + NORM_BYTES)
        return hash_ops + pair_ops, 0.0, read
    # sanger: a low-precision score prediction and its threshold compare on the matrix
    # units (a dense low-bit array produces the mask), then one pack op per score.
    rate = chip.peak_flops_per_s("int8") or chip.peak_flops_per_s(op.dtype)
    rate *= 8.0 / a.predict_bits * chip.compute_units.fraction(op.dtype)
    predict_s = (2.0 * d + 1.0) * pairs / rate
    read = b * (heads * queries + kv_heads * tokens) * d * a.predict_bits / 8
    return pairs, predict_s, read


def approx_attention_cost(chip: Chip, op: Attention) -> OpCost:
    """Cost of an approximated attention on ``chip`` (module docstring)."""
    a = op.approx
    if a is None or a.is_dense:
        return attention_cost(chip, replace(op, approx=None))
    kept = kept_attention(op)
    base = attention_cost(chip, kept)
    redo = 1.0 + (a.refetch_fraction if a.msb_bits else 0.0)
    # Progressive quantization: the kept K/V stream from home at MSB width, plus LSBs
    # for the re-fetched rows (whose attention is computed again).
    bits = 8.0 * dtype_bytes(op.dtype)
    kv_factor = (a.msb_bits + a.refetch_fraction * a.lsb_bits) / bits if a.msb_bits else 1.0
    saved = kept.kv_bytes * (1.0 - kv_factor)
    sel_ops, sel_matrix_s, sel_bytes = _selection(chip, op, a)
    vec = chip.vector_units
    sel_vector_s = sel_ops / vec.peak_ops_per_s
    sel_s = max(sel_vector_s, sel_matrix_s) if a.selection_overlapped else sel_vector_s + sel_matrix_s
    home = chip.home_level
    traffic = []
    for t in base.traffic:
        read = t.read_bytes * (redo if t.level != home else 1.0) + sel_bytes
        if t.level == home:
            read = max(read - saved, 0.0)
        traffic.append(LevelTraffic(t.level, read, t.write_bytes))
    sel_energy = sel_ops * vec.energy_per_op_pj * 1e-12
    if sel_matrix_s:  # the prediction's MACs (one per score and head dimension), at predict_bits
        sel_energy += sel_ops * op.head_dim * a.predict_bits / 8 \
            * chip.compute_units.energy_per_mac_pj.get("int8", 0.0) * 1e-12  # type: ignore[call-overload]
    kept_s = base.compute_s * redo
    compute_s = max(kept_s, sel_s) if a.selection_overlapped else kept_s + sel_s
    return make_cost(chip, flops=kept.flops * redo, compute_cycles=base.compute_cycles * redo,
                     compute_s=compute_s, traffic=tuple(traffic),
                     n_kernels=base.n_kernels, compute_energy_j=base.compute_energy_j * redo + sel_energy,
                     footprint_bytes=kept.kv_bytes * kv_factor,
                     detail=f"{a.label()}; kept {base.detail}", compute_limit=base.compute_limit)
