"""Forward graphs of one transformer layer and of the embedding / LM-head ends."""

from __future__ import annotations

import math

from hwsim.workload.graph import OperatorGraph
from hwsim.workload.ops import Attention, Elementwise, Embedding, MatMul
from hwsim.workload.spec import ModelSpec


def experts_touched(n_tokens: int, n_experts: int, top_k: int) -> int:
    """Expected number of distinct experts that ``n_tokens`` tokens route to, each
    choosing ``top_k`` of ``n_experts`` uniformly: E (1 - (1 - k/E)^T), at least k."""
    expected = n_experts * (1.0 - (1.0 - top_k / n_experts) ** n_tokens)
    return max(top_k, min(n_experts, round(expected)))


def forward_layer(
    spec: ModelSpec,
    batch: int,
    q_len: int,
    kv_len: int,
    dtype: str,
    attention_impl: str = "flash",
    sparsity: str | None = None,
) -> OperatorGraph:
    """One transformer layer over ``batch`` x ``q_len`` new tokens attending to
    ``kv_len`` keys (pre-norm order; a post-norm encoder has the same operators).

    Q, K and V come from one fused projection and gate and up from another, as
    inference engines and the calibration measurements do.
    """
    d, hd = spec.hidden_size, spec.d_head
    n_h, n_kv = spec.num_attention_heads, spec.n_kv_heads
    n_tok = batch * q_len
    g = OperatorGraph()
    norm = spec.norm
    g.add_op("attn_norm", Elementwise(norm, n_tok, d, dtype))
    g.add_op("qkv_proj", MatMul(n_tok, d, (n_h + 2 * n_kv) * hd, dtype, sparsity=sparsity), ["attn_norm"])
    attn = Attention(
        batch, n_h, n_kv, q_len, kv_len, hd, is_causal=not spec.encoder_only, dtype=dtype,
        impl=attention_impl,
    )
    if not spec.encoder_only:
        # Decoders append the new tokens' K and V to the cache (one copy kernel).
        g.add_op("kv_cache_write", Elementwise("copy", n_tok, 2 * n_kv * hd, dtype), ["qkv_proj"])
    g.add_op("attention", attn, ["kv_cache_write" if not spec.encoder_only else "qkv_proj"])
    g.add_op("o_proj", MatMul(n_tok, n_h * hd, d, dtype, sparsity=sparsity), ["attention"])
    g.add_op("attn_residual", Elementwise("residual_add", n_tok, d, dtype), ["o_proj"])
    g.add_op("ffn_norm", Elementwise(norm, n_tok, d, dtype), ["attn_residual"])
    last = _ffn(g, spec, n_tok, dtype, sparsity)
    g.add_op("ffn_residual", Elementwise("residual_add", n_tok, d, dtype), [last, "attn_residual"])
    return g


def _ffn(g: OperatorGraph, spec: ModelSpec, n_tok: int, dtype: str, sparsity: str | None) -> str:
    """Add the dense or mixture-of-experts FFN after ``ffn_norm``; return its last op."""
    d, ff = spec.hidden_size, spec.ffn_size
    n_up = 2 * ff if spec.is_gated else ff
    act = "silu_mul" if spec.is_gated else "gelu"
    if not spec.is_moe:
        g.add_op("up_proj", MatMul(n_tok, d, n_up, dtype, sparsity=sparsity), ["ffn_norm"])
        g.add_op("activation", Elementwise(act, n_tok, ff, dtype), ["up_proj"])
        g.add_op("down_proj", MatMul(n_tok, ff, d, dtype, sparsity=sparsity), ["activation"])
        return "down_proj"
    n_exp, top_k = spec.num_local_experts, spec.num_experts_per_tok
    touched = experts_touched(n_tok, n_exp, top_k)
    per_expert = math.ceil(n_tok * top_k / touched)
    g.add_op("router", MatMul(n_tok, d, n_exp, dtype), ["ffn_norm"])
    g.add_op("router_topk", Elementwise("router_topk", n_tok, n_exp, dtype), ["router"])
    up = MatMul(per_expert, d, n_up, dtype, batch=touched, sparsity=sparsity)
    g.add_op("expert_up_proj", up, ["router_topk"])
    g.add_op("activation", Elementwise(act, n_tok * top_k, ff, dtype), ["expert_up_proj"])
    down = MatMul(per_expert, ff, d, dtype, batch=touched, sparsity=sparsity)
    g.add_op("expert_down_proj", down, ["activation"])
    g.add_op("expert_combine", Elementwise("residual_add", n_tok * top_k, d, dtype), ["expert_down_proj"])
    return "expert_combine"


def embedding_graph(spec: ModelSpec, n_tokens: int, dtype: str) -> OperatorGraph:
    """Token embedding lookup (encoders also normalise the embeddings)."""
    g = OperatorGraph()
    g.add_op("embedding", Embedding(n_tokens, spec.vocab_size, spec.hidden_size, dtype))
    if spec.encoder_only:
        g.add_op("embedding_norm", Elementwise("layernorm", n_tokens, spec.hidden_size, dtype), ["embedding"])
    return g


def head_graph(spec: ModelSpec, n_tokens: int, n_logits: int, dtype: str) -> OperatorGraph:
    """Final norm over ``n_tokens`` rows and the LM head for ``n_logits`` rows."""
    g = OperatorGraph()
    g.add_op("final_norm", Elementwise(spec.norm, n_tokens, spec.hidden_size, dtype))
    g.add_op("lm_head", MatMul(n_logits, spec.hidden_size, spec.vocab_size, dtype), ["final_norm"])
    return g
