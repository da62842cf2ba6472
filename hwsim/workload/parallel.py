"""Operator graphs of a transformer's layers, embedding and head, as one chip runs them
under a parallelism :class:`Plan` (``Plan()``: the whole model on one chip).

Megatron-LM splits (Shoeybi et al. 2019; Korthikanti et al. 2022):

- tensor parallel: QKV and gate/up are split by columns (heads and FFN width), the
  output and down projections by rows; each block's partial outputs are summed by one
  all-reduce (sequence parallel: a reduce-scatter after the block and an all-gather
  before the next, with norms and residuals on ``1/tp`` of the tokens). K/V heads are
  split too, and replicated once ``tp`` exceeds their number.
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
  and values are written back.
"""

from __future__ import annotations

import math

from hwsim.dtypes import dtype_bytes
from hwsim.workload.graph import OperatorGraph
from hwsim.workload.memory import layer_params
from hwsim.workload.ops import Attention, Collective, Elementwise, Embedding, MatMul
from hwsim.workload.plan import Plan
from hwsim.workload.spec import ModelSpec


def experts_touched(n_tokens: int, n_experts: int, top_k: int) -> int:
    """Expected number of distinct experts that ``n_tokens`` tokens route to, each
    choosing ``top_k`` of ``n_experts`` uniformly: E (1 - (1 - k/E)^T), at least k."""
    expected = n_experts * (1.0 - (1.0 - top_k / n_experts) ** n_tokens)
    return max(top_k, min(n_experts, round(expected)))


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


def sharded_layer(
    spec: ModelSpec, plan: Plan, batch: int, q_len: int, kv_len: int, dtype: str,
    attention_impl: str = "flash", sparsity: str | None = None,
) -> OperatorGraph:
    """One chip's graph of one layer: ``batch`` sequences (this chip's replica share) of
    ``q_len`` new tokens attending to ``kv_len`` keys, split by ``plan``."""
    tp, cp = plan.tp, plan.cp
    d, hd = spec.hidden_size, spec.d_head
    n_h, n_kv = spec.num_attention_heads // tp, local_kv_heads(spec, tp)
    q_local = math.ceil(q_len / cp)
    n_tok = batch * q_local
    norm_rows = math.ceil(n_tok / tp) if plan.sequence_parallel else n_tok
    g = OperatorGraph()
    g.add_op("attn_norm", Elementwise(spec.norm, norm_rows, d, dtype))
    x = _gather_input(g, "attn_gather", "attn_norm", n_tok, d, dtype, plan)
    g.add_op("qkv_proj", MatMul(n_tok, d, (n_h + 2 * n_kv) * hd, dtype, sparsity=sparsity), [x])
    prev = "qkv_proj"
    if not spec.encoder_only:
        g.add_op("kv_cache_write", Elementwise("copy", n_tok, 2 * n_kv * hd, dtype), [prev])
        prev = "kv_cache_write"
    if cp > 1:
        kv_bytes = batch * q_len * 2 * n_kv * hd * dtype_bytes(dtype)
        g.add_op("cp_kv_gather", Collective("all_gather", kv_bytes, "cp", cp, dtype), [prev])
        prev = "cp_kv_gather"
    attn = Attention(batch, n_h, n_kv, q_local, kv_len, hd, is_causal=not spec.encoder_only,
                     dtype=dtype, impl=attention_impl)
    g.add_op("attention", attn, [prev])
    g.add_op("o_proj", MatMul(n_tok, n_h * hd, d, dtype, sparsity=sparsity), ["attention"])
    x = _block_sum(g, "attn_allreduce", "o_proj", n_tok, d, dtype, plan)
    g.add_op("attn_residual", Elementwise("residual_add", norm_rows, d, dtype), [x])
    g.add_op("ffn_norm", Elementwise(spec.norm, norm_rows, d, dtype), ["attn_residual"])
    x = _gather_input(g, "ffn_gather", "ffn_norm", n_tok, d, dtype, plan)
    last = _sharded_ffn(g, spec, plan, x, n_tok, dtype, sparsity)
    x = _block_sum(g, "ffn_allreduce", last, n_tok, d, dtype, plan)
    g.add_op("ffn_residual", Elementwise("residual_add", norm_rows, d, dtype), [x, "attn_residual"])
    _host_streams(g, spec, plan, batch, q_len, kv_len, dtype)
    return g


def _host_streams(g: OperatorGraph, spec: ModelSpec, plan: Plan, batch: int, q_len: int, kv_len: int,
                  dtype: str) -> None:
    """Add the layer's transfers from and to host/external memory that ``plan.offload`` asks for."""
    if "weights" in plan.offload:
        g.add_op("weights_stream", Collective("host_read", layer_param_bytes(spec, plan, dtype), "host", 1,
                                              dtype, prefetch=True))
    if "kv_cache" in plan.offload and not spec.encoder_only:
        per_token = 2 * local_kv_heads(spec, plan.tp) * spec.d_head * dtype_bytes(dtype)
        cached = batch * math.ceil(max(0, kv_len - q_len) / plan.cp) * per_token
        if cached:
            g.add_op("kv_stream", Collective("host_read", cached, "host", 1, dtype, prefetch=True))
        new = batch * math.ceil(q_len / plan.cp) * per_token
        g.add_op("kv_writeback", Collective("host_write", new, "host", 1, dtype, prefetch=True))


def _sharded_ffn(
    g: OperatorGraph, spec: ModelSpec, plan: Plan, after: str, n_tok: int, dtype: str, sparsity: str | None
) -> str:
    """The FFN's share on one chip (dense, or MoE with expert parallelism)."""
    d, ff = spec.hidden_size, spec.ffn_size // plan.tp
    n_up = 2 * ff if spec.is_gated else ff
    act = "silu_mul" if spec.is_gated else "gelu"
    if not spec.is_moe:
        g.add_op("up_proj", MatMul(n_tok, d, n_up, dtype, sparsity=sparsity), [after])
        g.add_op("activation", Elementwise(act, n_tok, ff, dtype), ["up_proj"])
        g.add_op("down_proj", MatMul(n_tok, ff, d, dtype, sparsity=sparsity), ["activation"])
        return "down_proj"
    ep, n_exp, top_k = plan.ep, spec.num_local_experts, spec.num_experts_per_tok
    g.add_op("router", MatMul(n_tok, d, n_exp, dtype), [after])
    g.add_op("router_topk", Elementwise("router_topk", n_tok, n_exp, dtype), ["router"])
    prev = "router_topk"
    routed = n_tok * top_k  # token copies this chip sends out and, balanced, receives
    if ep > 1:
        size = routed * d * dtype_bytes(dtype)
        g.add_op("moe_dispatch", Collective("all_to_all", size, "ep", ep, dtype), [prev])
        prev = "moe_dispatch"
    local = n_exp // ep
    touched = max(1, math.ceil(experts_touched(n_tok * ep, n_exp, top_k) / ep))
    touched = min(touched, local)
    per_expert = math.ceil(routed / touched)
    g.add_op("expert_up_proj", MatMul(per_expert, d, n_up, dtype, batch=touched, sparsity=sparsity), [prev])
    g.add_op("activation", Elementwise(act, routed, ff, dtype), ["expert_up_proj"])
    down = MatMul(per_expert, ff, d, dtype, batch=touched, sparsity=sparsity)
    g.add_op("expert_down_proj", down, ["activation"])
    prev = "expert_down_proj"
    if ep > 1:
        size = routed * d * dtype_bytes(dtype)
        g.add_op("moe_combine", Collective("all_to_all", size, "ep", ep, dtype), [prev])
        prev = "moe_combine"
    g.add_op("expert_combine", Elementwise("residual_add", routed, d, dtype), [prev])
    return "expert_combine"


def sharded_embedding(spec: ModelSpec, plan: Plan, n_tokens: int, dtype: str) -> OperatorGraph:
    """Vocab-parallel embedding lookup, summed over the tensor-parallel group."""
    g = OperatorGraph()
    g.add_op("embedding", Embedding(n_tokens, math.ceil(spec.vocab_size / plan.tp), spec.hidden_size, dtype))
    last = "embedding"
    if plan.tp > 1:
        size = n_tokens * spec.hidden_size * dtype_bytes(dtype)
        g.add_op("embedding_allreduce", Collective("all_reduce", size, "tp", plan.tp, dtype), [last])
        last = "embedding_allreduce"
    if spec.encoder_only:
        g.add_op("embedding_norm", Elementwise("layernorm", n_tokens, spec.hidden_size, dtype), [last])
    return g


def sharded_head(spec: ModelSpec, plan: Plan, n_tokens: int, n_logits: int, dtype: str) -> OperatorGraph:
    """Final norm and vocab-parallel LM head; the logits are gathered for sampling."""
    g = OperatorGraph()
    rows = math.ceil(n_tokens / plan.tp) if plan.sequence_parallel else n_tokens
    g.add_op("final_norm", Elementwise(spec.norm, rows, spec.hidden_size, dtype))
    vocab = math.ceil(spec.vocab_size / plan.tp)
    g.add_op("lm_head", MatMul(n_logits, spec.hidden_size, vocab, dtype), ["final_norm"])
    if plan.tp > 1:
        size = n_logits * spec.vocab_size * dtype_bytes(dtype)
        g.add_op("logits_gather", Collective("all_gather", size, "tp", plan.tp, dtype), ["lm_head"])
    return g


def layer_param_bytes(spec: ModelSpec, plan: Plan, dtype: str) -> float:
    """Bytes of one layer's parameters on one chip (its tensor and expert share)."""
    return sum(layer_params(spec, plan.tp, plan.ep)) * dtype_bytes(dtype)
