"""Operator graphs of a transformer's layers, embedding and head, as one chip runs them
under a parallelism :class:`Plan` (``Plan()``: the whole model on one chip).

Megatron-LM splits (Shoeybi et al. 2019; Korthikanti et al. 2022):

- tensor parallel: QKV and gate/up are split by columns (heads and FFN width), the
  output and down projections by rows; each block's partial outputs are summed by one
  all-reduce (sequence parallel: a reduce-scatter after the block and an all-gather
  before the next, with norms and residuals on ``1/tp`` of the tokens). K/V heads are
  split too, and replicated once ``tp`` exceeds their number. A parallel block (GPT-J,
  Falcon, GPT-NeoX) sums attention and FFN locally and reduces once.
- expert parallel: each chip holds ``experts / ep`` experts; tokens are sent to their
  experts' chips and back by two all-to-alls.
- context parallel: each chip holds ``1/cp`` of the sequence's queries; the keys and
  values of the whole sequence are gathered for attention (ring attention moves the
  same bytes, overlapped with compute).
- vocab parallel embedding and LM head, joined by an all-reduce (embedding) and an
  all-gather of the logits (inference).
- offload (``plan.offload``): offloaded weights stream in from host or external memory
  one layer ahead (double buffering: each layer starts the transfer of the next one's
  weights, so the first layer's transfer is counted at the end, and every layer's
  bytes once); an offloaded KV cache streams in the same way, and the new tokens' keys
  and values are written back. A placement (``plan.placement``) streams each off-chip
  tier's share of a layer's weights and cached KV over that tier's own link the same way
  (``weights_stream_<tier>``, ``kv_stream_<tier>``; the new tokens' keys and values are
  written to the tiers in proportion).

Every shape comes from the layer's :class:`~hwsim.workload.layers.LayerSpec`.
"""

from __future__ import annotations

import math

from hwsim.dtypes import dtype_bytes
from hwsim.workload.blocks import MlaForm, add_attention, add_ffn, attention_ops, experts_touched
from hwsim.workload.graph import OperatorGraph
from hwsim.workload.layers import LayerSpec, kv_bytes_per_token, layer_weight_params
from hwsim.workload.ops import Collective, Elementwise, Embedding, MatMul, Op, Sparsity, sparsity_for
from hwsim.workload.plan import Plan
from hwsim.workload.precision import Precision
from hwsim.workload.quantize import quantize_graph
from hwsim.workload.spec import ModelSpec

__all__ = ["attention_ops", "experts_touched", "layer_graph", "layer_param_bytes", "local_kv_heads",
           "period_graph", "sharded_embedding", "sharded_head", "sharded_layer"]


def local_kv_heads(spec: ModelSpec, tp: int) -> int:
    """K/V heads one chip holds: split over tp, replicated when tp exceeds them."""
    return max(1, spec.n_kv_heads // tp)


def _block_sum(g: OperatorGraph, name: str, after: str, n_tok: int, d: int, dtype: str, plan: Plan) -> str:
    """Sum a block's partial outputs over the tensor-parallel group; return the last op."""
    if plan.tp == 1:
        return after
    size = n_tok * d * dtype_bytes(dtype)
    kind = "reduce_scatter" if plan.sequence_parallel else "all_reduce"
    g.add_op(name, Collective(kind, size, "tp", plan.tp, dtype), [after])
    return name


def _gather_input(g: OperatorGraph, name: str, after: str, n_tok: int, d: int, dtype: str, plan: Plan) -> str:
    """Sequence parallel: gather the block input's tokens before the column split."""
    if plan.tp == 1 or not plan.sequence_parallel:
        return after
    g.add_op(name, Collective("all_gather", n_tok * d * dtype_bytes(dtype), "tp", plan.tp, dtype), [after])
    return name


def layer_graph(
    layer: LayerSpec, plan: Plan, n_tokens: int, attention: list[tuple[str, Op]], dtype: str,
    sparsity: Sparsity = None, *, cp_kv_tokens: int = 0, capacity_factor: float = 1.0,
    cross: list[tuple[str, Op]] | None = None,
) -> OperatorGraph:
    """One chip's graph of one layer whose linear operators see ``n_tokens`` rows (this
    chip's tokens), with ``attention`` (from :func:`attention_ops`, or a caller's own
    kernel for a mixed batch) between the projections. ``cp_kv_tokens``: tokens whose
    keys and values a context-parallel group gathers. ``cross``: an encoder-decoder
    decoder layer's cross-attention ops (:mod:`hwsim.workload.encdec`), run in order
    between a norm and a residual after the self-attention."""
    d = layer.hidden_size
    norm_rows = math.ceil(n_tokens / plan.tp) if plan.sequence_parallel else n_tokens
    g = OperatorGraph()
    g.add_op("attn_norm", Elementwise(layer.norm, norm_rows, d, dtype))
    x = _gather_input(g, "attn_gather", "attn_norm", n_tokens, d, dtype, plan)
    attn = add_attention(g, layer, plan, x, n_tokens, attention, dtype, sparsity_for(sparsity, "attention"),
                         cp_kv_tokens)
    if layer.parallel:
        ffn_in = x
        if layer.n_norms >= 2:
            g.add_op("ffn_norm", Elementwise(layer.norm, norm_rows, d, dtype))
            ffn_in = _gather_input(g, "ffn_gather", "ffn_norm", n_tokens, d, dtype, plan)
        ffn_sparsity = sparsity_for(sparsity, "ffn")
        last = add_ffn(g, layer, plan, ffn_in, n_tokens, dtype, ffn_sparsity, capacity_factor)
        g.add_op("branch_sum", Elementwise("residual_add", n_tokens, d, dtype), [attn, last])
        x = _block_sum(g, "block_allreduce", "branch_sum", n_tokens, d, dtype, plan)
        g.add_op("ffn_residual", Elementwise("residual_add", norm_rows, d, dtype), [x])
    else:
        x = _block_sum(g, "attn_allreduce", attn, n_tokens, d, dtype, plan)
        if layer.n_norms >= 4:
            g.add_op("attn_post_norm", Elementwise(layer.norm, norm_rows, d, dtype), [x])
            x = "attn_post_norm"
        g.add_op("attn_residual", Elementwise("residual_add", norm_rows, d, dtype), [x])
        if not layer.ffn.present:
            return g  # a Mamba block: norm, mixer, residual
        residual = "attn_residual"
        if cross:
            g.add_op("cross_norm", Elementwise(layer.norm, norm_rows, d, dtype), [residual])
            prev = "cross_norm"
            for name, op in cross:
                g.add_op(name, op, [prev])
                prev = name
            g.add_op("cross_residual", Elementwise("residual_add", norm_rows, d, dtype), [prev, residual])
            residual = "cross_residual"
        g.add_op("ffn_norm", Elementwise(layer.norm, norm_rows, d, dtype), [residual])
        x = _gather_input(g, "ffn_gather", "ffn_norm", n_tokens, d, dtype, plan)
        last = add_ffn(g, layer, plan, x, n_tokens, dtype, sparsity_for(sparsity, "ffn"), capacity_factor)
        x = _block_sum(g, "ffn_allreduce", last, n_tokens, d, dtype, plan)
        if layer.n_norms >= 4:
            g.add_op("ffn_post_norm", Elementwise(layer.norm, norm_rows, d, dtype), [x])
            x = "ffn_post_norm"
        g.add_op("ffn_residual", Elementwise("residual_add", norm_rows, d, dtype), [x, residual])
    return g


def sharded_layer(
    spec: ModelSpec | LayerSpec, plan: Plan, batch: int, q_len: int, kv_len: int, dtype: str,
    attention_impl: str = "flash", sparsity: Sparsity = None, *, capacity_factor: float = 1.0,
    mla: MlaForm | None = None,
) -> OperatorGraph:
    """One chip's graph of one layer (a :class:`LayerSpec`, or a model's first layer):
    ``batch`` sequences (this chip's replica share) of ``q_len`` new tokens attending to
    ``kv_len`` keys, split by ``plan``."""
    layer = spec.layer(0) if isinstance(spec, ModelSpec) else spec
    q_local = math.ceil(q_len / plan.cp)
    ops = attention_ops(layer, plan, batch, q_local, kv_len, dtype, attention_impl, mla)
    g = layer_graph(layer, plan, batch * q_local, ops, dtype, sparsity, cp_kv_tokens=batch * q_len,
                    capacity_factor=capacity_factor)
    host_streams(g, layer, plan, batch, q_len, kv_len, dtype)
    return g


def period_graph(layers: tuple[LayerSpec, ...], plan: Plan, batch: int, q_len: int, kv_len: int, dtype: str,
                 attention_impl: str = "flash", sparsity: Sparsity = None, *,
                 capacity_factor: float = 1.0, mla: MlaForm | None = None,
                 precision: Precision | None = None, first_layer: int = 0) -> OperatorGraph:
    """The layers of one period (e.g. five local and one global layer) chained in one
    graph, their op names prefixed ``l0.``, ``l1.``...; one layer keeps plain names.
    ``precision`` quantizes each layer (model layer ``first_layer + k`` for its
    per-layer weight override; :mod:`hwsim.workload.quantize`)."""
    graphs = [sharded_layer(lyr, plan, batch, q_len, kv_len, dtype, attention_impl, sparsity,
                            capacity_factor=capacity_factor, mla=mla) for lyr in layers]
    if precision is not None:
        graphs = [quantize_graph(g, precision, precision.layer_weights(first_layer + k))
                  for k, g in enumerate(graphs)]
    return chain_graphs(graphs)


def chain_graphs(graphs: list[OperatorGraph]) -> OperatorGraph:
    """Layer graphs run one after another in one graph (names prefixed ``l0.``, ``l1.``...;
    a single graph is returned as it is); streams from host memory stay unchained."""
    if len(graphs) == 1:
        return graphs[0]
    out = OperatorGraph()
    prev: list[str] = []
    for k, g in enumerate(graphs):
        for name, op in g.ops():
            preds = [f"l{k}.{p}" for p in g.predecessors(name)]
            if not preds and not _is_stream(op):
                preds = list(prev)
            out.add_op(f"l{k}.{name}", op, preds)
        prev = [f"l{k}.{n}" for n in g.sinks if not _is_stream(g.nodes[n]["op"])]
    return out


def _is_stream(op: Op) -> bool:
    return isinstance(op, Collective) and op.prefetch


def host_streams(g: OperatorGraph, layer: LayerSpec, plan: Plan, batch: int, q_len: int, kv_len: int,
                  dtype: str) -> None:
    """Add the layer's transfers from and to host/external memory that ``plan.offload`` asks for."""
    if "weights" in plan.offload:
        g.add_op("weights_stream", Collective("host_read", layer_param_bytes(layer, plan, dtype), "host", 1,
                                              dtype, prefetch=True))
    attention = layer.attention  # a state-space layer's fixed state stays on the chip
    if "kv_cache" in plan.offload and attention is not None and attention.is_causal:
        per_token = kv_bytes_per_token(layer, plan.tp, dtype_bytes(dtype))
        held = attention.kv_tokens_held(max(0, kv_len - q_len))
        cached = batch * math.ceil(held / plan.cp) * per_token
        if cached:
            g.add_op("kv_stream", Collective("host_read", cached, "host", 1, dtype, prefetch=True))
        new = batch * math.ceil(q_len / plan.cp) * per_token
        g.add_op("kv_writeback", Collective("host_write", new, "host", 1, dtype, prefetch=True))
    if plan.placement:
        placed_streams(g, layer, plan, batch, q_len, kv_len, dtype)


def placed_streams(g: OperatorGraph, layer: LayerSpec, plan: Plan, batch: int, q_len: int, kv_len: int,
                   dtype: str) -> None:
    """Add the streams of the layer's weights and KV cache that ``plan.placement`` keeps
    off the chip, one per tier and direction."""
    # Under ZeRO-3 each rank keeps (and streams) only its shard; the all-gather joins them.
    param_bytes = layer_param_bytes(layer, plan, dtype) / (plan.dp if plan.zero_stage == 3 else 1)
    for tier, share in plan.off_chip_shares("weights").items():
        g.add_op(f"weights_stream_{tier}", Collective("host_read", share * param_bytes, "host", 1, dtype,
                                                      prefetch=True, tier=tier))
    attention = layer.attention
    kv_shares = plan.off_chip_shares("kv_cache")
    if not kv_shares or attention is None or not attention.is_causal:
        return
    per_token = kv_bytes_per_token(layer, plan.tp, dtype_bytes(dtype))
    cached = batch * math.ceil(attention.kv_tokens_held(max(0, kv_len - q_len)) / plan.cp) * per_token
    new = batch * math.ceil(q_len / plan.cp) * per_token
    for tier, share in kv_shares.items():
        if cached:
            g.add_op(f"kv_stream_{tier}", Collective("host_read", share * cached, "host", 1, dtype,
                                                     prefetch=True, tier=tier))
        g.add_op(f"kv_writeback_{tier}", Collective("host_write", share * new, "host", 1, dtype,
                                                    prefetch=True, tier=tier))


def sharded_embedding(spec: ModelSpec, plan: Plan, n_tokens: int, dtype: str) -> OperatorGraph:
    """Vocab-parallel embedding lookup (and position / token-type lookups, ALBERT's
    projection), summed over the tensor-parallel group."""
    g = OperatorGraph()
    e, d = spec.embedding_width, spec.hidden_size
    g.add_op("embedding", Embedding(n_tokens, math.ceil(spec.vocab_size / plan.tp), e, dtype))
    last = "embedding"
    if plan.tp > 1:
        size = n_tokens * e * dtype_bytes(dtype)
        g.add_op("embedding_allreduce", Collective("all_reduce", size, "tp", plan.tp, dtype), [last])
        last = "embedding_allreduce"
    tables = [(n, rows) for n, rows in (("position_embedding", spec.position_embeddings),
                                        ("token_type_embedding", spec.type_vocab_size)) if rows]
    for name, rows in tables:
        g.add_op(name, Embedding(n_tokens, rows, e, dtype))
    if tables:
        g.add_op("embedding_sum", Elementwise("residual_add", n_tokens * len(tables), e, dtype),
                 [last] + [n for n, _ in tables])
        last = "embedding_sum"
    if spec.embedding_norm:
        g.add_op("embedding_norm", Elementwise(spec.norm, n_tokens, e, dtype), [last])
        last = "embedding_norm"
    if e != d:
        g.add_op("embedding_proj", MatMul(n_tokens, e, d, dtype, bias=True), [last])
    return g


def sharded_head(spec: ModelSpec, plan: Plan, n_tokens: int, n_logits: int, dtype: str) -> OperatorGraph:
    """Final norm and vocab-parallel LM head; the logits are gathered for sampling."""
    g = OperatorGraph()
    rows = math.ceil(n_tokens / plan.tp) if plan.sequence_parallel else n_tokens
    g.add_op("final_norm", Elementwise(spec.norm, rows, spec.hidden_size, dtype))
    vocab = math.ceil(spec.vocab_size / plan.tp)
    head = MatMul(n_logits, spec.hidden_size, vocab, dtype, bias=spec.lm_head_bias)
    g.add_op("lm_head", head, ["final_norm"])
    last = "lm_head"
    if spec.final_softcap:
        g.add_op("logit_softcap", Elementwise("softcap", n_logits, vocab, dtype), [last])
        last = "logit_softcap"
    if plan.tp > 1:
        size = n_logits * spec.vocab_size * dtype_bytes(dtype)
        g.add_op("logits_gather", Collective("all_gather", size, "tp", plan.tp, dtype), [last])
    return g


def layer_param_bytes(layer: LayerSpec | ModelSpec, plan: Plan, dtype: str) -> float:
    """Bytes of one layer's parameters one chip reads (its tensor and expert share;
    a shared ALBERT layer's too, though it stores them once)."""
    lyr = layer.layer(0) if isinstance(layer, ModelSpec) else layer
    return sum(layer_weight_params(lyr, plan.tp, plan.ep)) * dtype_bytes(dtype)
