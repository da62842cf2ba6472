"""Operators of a layer's attention and FFN on one chip, from its :class:`LayerSpec`.

The linear operators see ``n_tokens`` rows; the attention kernel(s) are built apart by
:func:`attention_ops` from a uniform batch ``(batch, q_len, kv_len)``, so a caller can
put its own attention (a mixed batch of requests) between the same projections.

MLA (DeepSeek-V2/V3) has two formulations. *Expanded*: the cached latent is projected
up to per-head keys and values (``kv_up`` over every key) and attention runs with
``qk_nope + qk_rope`` wide keys and ``v_head_dim`` wide values. *Absorbed*: the key
up-projection is folded into the queries (``q_absorb``) and the value up-projection
applied after attention (``v_absorb``), so attention reads the compressed latent
directly, as multi-query attention with ``kv_lora_rank + qk_rope`` wide keys. The
absorbed form does far less work when few queries meet many cached keys (decode), the
expanded one when queries are as many as keys (prefill); :func:`mla_form` picks the one
with fewer FLOPs.
"""

from __future__ import annotations

import math
from typing import Literal

from hwsim.workload.graph import OperatorGraph
from hwsim.workload.layers import AttentionSpec, FfnSpec, LayerSpec, SsmSpec, split
from hwsim.workload.ops import Attention, Collective, Elementwise, MatMul, Op
from hwsim.workload.plan import Plan
from hwsim.workload.ssm_blocks import add_ssm, ssm_ops

MlaForm = Literal["absorbed", "expanded"]


def local_heads(a: AttentionSpec, tp: int) -> tuple[int, int]:
    """(query heads, K/V heads) one chip holds: K/V split over tp, replicated when tp
    exceeds them (MLA: the latent is one shared 'head')."""
    return split(a.n_heads, tp), max(1, a.n_kv_heads // tp)


def mla_form(a: AttentionSpec | SsmSpec, q_len: int, kv_len: int) -> MlaForm:
    """The MLA formulation with fewer FLOPs for ``q_len`` queries over ``kv_len`` keys."""
    m = a.mla
    assert m is not None
    scores = Attention(1, 1, 1, q_len, kv_len, 1, a.is_causal).n_scores
    expanded = kv_len * m.kv_lora_rank * (m.qk_nope_head_dim + m.v_head_dim) + scores * (
        m.qk_head_dim + m.v_head_dim)
    absorbed = q_len * m.kv_lora_rank * (m.qk_nope_head_dim + m.v_head_dim) + scores * (
        m.latent_width + m.kv_lora_rank)
    return "absorbed" if absorbed < expanded else "expanded"


def attention_ops(layer: LayerSpec, plan: Plan, batch: int, q_len: int, kv_len: int, dtype: str,
                  impl: str = "flash", form: MlaForm | None = None) -> list[tuple[str, Op]]:
    """The attention kernel (MLA: with the up-projections that depend on the form) of
    one chip for ``batch`` sequences of ``q_len`` queries over ``kv_len`` keys; run in
    order. ``q_len`` is the chip's share of the queries (context parallel). A
    state-space layer's per-request kernel is its selective scan
    (:func:`hwsim.workload.ssm_blocks.ssm_ops`)."""
    a = layer.mixer
    if isinstance(a, SsmSpec):
        return ssm_ops(layer, plan, batch, q_len, kv_len, dtype)
    h, kv_h = local_heads(a, plan.tp)
    kw = {"is_causal": a.is_causal, "dtype": dtype, "impl": impl, "softcap": a.softcap}
    if a.key_density < 1.0:
        kw["key_density"] = a.key_density
    if a.kind == "sliding":
        kw["window"] = a.window
    elif a.kind == "chunked":
        kw["chunk"] = a.window
    m = a.mla
    if m is None:
        return [("attention", Attention(batch, h, kv_h, q_len, kv_len, a.head_dim, **kw))]  # type: ignore[arg-type]
    form = form or mla_form(a, q_len, kv_len)
    if form == "expanded":
        up = MatMul(batch * kv_len, m.kv_lora_rank, h * (m.qk_nope_head_dim + m.v_head_dim), dtype)
        att = Attention(batch, h, h, q_len, kv_len, m.qk_head_dim, v_head_dim=m.v_head_dim,
                        variant="mla expanded", **kw)  # type: ignore[arg-type]
        return [("kv_up", up), ("attention", att)]
    n_q = batch * q_len
    att = Attention(batch, h, 1, q_len, kv_len, m.latent_width, v_head_dim=m.kv_lora_rank, latent_kv=True,
                    variant="mla absorbed", **kw)  # type: ignore[arg-type]
    return [("q_absorb", MatMul(n_q, m.qk_nope_head_dim, m.kv_lora_rank, dtype, batch=h)),
            ("attention", att),
            ("v_absorb", MatMul(n_q, m.kv_lora_rank, m.v_head_dim, dtype, batch=h))]


def add_attention(g: OperatorGraph, layer: LayerSpec, plan: Plan, after: str, n_tokens: int,
                  attention: list[tuple[str, Op]], dtype: str, sparsity: str | None,
                  cp_kv_tokens: int = 0) -> str:
    """Projections, cache write and ``attention`` after ``after``; returns the o_proj
    (a state-space layer: its mixer, :func:`hwsim.workload.ssm_blocks.add_ssm`)."""
    a, d = layer.mixer, layer.hidden_size
    if isinstance(a, SsmSpec):
        return add_ssm(g, layer, plan, after, n_tokens, attention, dtype, sparsity)
    h, kv_h = local_heads(a, plan.tp)
    m = a.mla
    if m is None:
        g.add_op("qkv_proj", MatMul(n_tokens, d, (h + 2 * kv_h) * a.head_dim, dtype, sparsity=sparsity,
                                    bias=a.qkv_bias), [after])
        prev = "qkv_proj"
        if a.qk_norm:
            g.add_op("qk_norm", Elementwise("rmsnorm", n_tokens, (h + kv_h) * a.head_dim, dtype), [prev])
            prev = "qk_norm"
        cached = 2 * kv_h * a.head_dim
    else:
        if m.q_lora_rank:
            g.add_op("q_down", MatMul(n_tokens, d, m.q_lora_rank, dtype, sparsity=sparsity), [after])
            g.add_op("q_norm", Elementwise("rmsnorm", n_tokens, m.q_lora_rank, dtype), ["q_down"])
            g.add_op("q_up", MatMul(n_tokens, m.q_lora_rank, h * m.qk_head_dim, dtype, sparsity=sparsity),
                     ["q_norm"])
            q_last = "q_up"
        else:
            g.add_op("q_proj", MatMul(n_tokens, d, h * m.qk_head_dim, dtype, sparsity=sparsity), [after])
            q_last = "q_proj"
        g.add_op("kv_down", MatMul(n_tokens, d, m.latent_width, dtype, sparsity=sparsity), [after])
        g.add_op("kv_norm", Elementwise("rmsnorm", n_tokens, m.kv_lora_rank, dtype), ["kv_down", q_last])
        prev, cached = "kv_norm", m.latent_width
    if a.is_causal:
        g.add_op("kv_cache_write", Elementwise("copy", n_tokens, cached, dtype), [prev])
        prev = "kv_cache_write"
    if plan.cp > 1:
        size = cp_kv_tokens * cached * _bytes(dtype)
        g.add_op("cp_kv_gather", Collective("all_gather", size, "cp", plan.cp, dtype), [prev])
        prev = "cp_kv_gather"
    for name, op in attention:
        g.add_op(name, op, [prev])
        prev = name
    width = h * (m.v_head_dim if m else a.head_dim)
    g.add_op("o_proj", MatMul(n_tokens, width, d, dtype, sparsity=sparsity, bias=a.o_bias), [prev])
    return "o_proj"


def _bytes(dtype: str) -> float:
    from hwsim.dtypes import dtype_bytes

    return dtype_bytes(dtype)


def experts_touched(n_tokens: int, n_experts: int, top_k: int) -> int:
    """Expected number of distinct experts that ``n_tokens`` tokens route to, each
    choosing ``top_k`` of ``n_experts`` uniformly: E (1 - (1 - k/E)^T), at least k."""
    expected = n_experts * (1.0 - (1.0 - top_k / n_experts) ** n_tokens)
    return max(top_k, min(n_experts, round(expected)))


def _mlp(g: OperatorGraph, prefix: str, f: FfnSpec, d: int, width: int, after: str, n_tok: int,
         dtype: str, sparsity: str | None) -> str:
    n_up = 2 * width if f.gated else width
    g.add_op(f"{prefix}up_proj", MatMul(n_tok, d, n_up, dtype, sparsity=sparsity, bias=f.bias), [after])
    g.add_op(f"{prefix}activation", Elementwise(f.activation, n_tok, width, dtype), [f"{prefix}up_proj"])
    g.add_op(f"{prefix}down_proj", MatMul(n_tok, width, d, dtype, sparsity=sparsity, bias=f.bias),
             [f"{prefix}activation"])
    return f"{prefix}down_proj"


def add_ffn(g: OperatorGraph, layer: LayerSpec, plan: Plan, after: str, n_tok: int, dtype: str,
            sparsity: str | None, capacity_factor: float = 1.0) -> str:
    """The FFN's share on one chip (dense, or MoE with expert parallelism); returns its last op.

    ``capacity_factor`` (MoE, at least 1) pads every expert's buffer to that multiple
    of the mean load (GShard/Switch capacity), which scales the expert GEMMs' rows and
    the all-to-all volume; 1 is uniform routing without padding.
    """
    f, d, tp = layer.ffn, layer.hidden_size, plan.tp
    if not f.is_moe:
        return _mlp(g, "", f, d, split(f.width, tp), after, n_tok, dtype, sparsity)
    ep, n_exp, top_k = plan.ep, f.n_experts, f.top_k
    width = split(f.width, tp)
    g.add_op("router", MatMul(n_tok, d, n_exp, dtype, bias=f.router_bias), [after])
    g.add_op("router_topk", Elementwise("router_topk", n_tok, n_exp, dtype), ["router"])
    prev = "router_topk"
    routed = n_tok * top_k  # token copies this chip sends out and, balanced, receives
    size = capacity_factor * routed * d * _bytes(dtype)
    if ep > 1:
        g.add_op("moe_dispatch", Collective("all_to_all", size, "ep", ep, dtype), [prev])
        prev = "moe_dispatch"
    local = split(n_exp, ep)
    touched = min(local, max(1, math.ceil(experts_touched(n_tok * ep, n_exp, top_k) / ep)))
    per_expert = math.ceil(capacity_factor * routed / touched)
    n_up = 2 * width if f.gated else width
    g.add_op("expert_up_proj", MatMul(per_expert, d, n_up, dtype, batch=touched, sparsity=sparsity,
                                      bias=f.bias), [prev])
    g.add_op("activation", Elementwise(f.activation, touched * per_expert, width, dtype), ["expert_up_proj"])
    g.add_op("expert_down_proj", MatMul(per_expert, width, d, dtype, batch=touched, sparsity=sparsity,
                                        bias=f.bias), ["activation"])
    prev = "expert_down_proj"
    if ep > 1:
        g.add_op("moe_combine", Collective("all_to_all", size, "ep", ep, dtype), [prev])
        prev = "moe_combine"
    g.add_op("expert_combine", Elementwise("residual_add", routed, d, dtype), [prev])
    if not f.shared_width:
        return "expert_combine"
    shared = _mlp(g, "shared_", f, d, split(f.shared_width, tp), after, n_tok, dtype, sparsity)
    if f.shared_gate:
        g.add_op("shared_gate", MatMul(n_tok, d, 1, dtype), [after])
        g.add_op("shared_gate_mul", Elementwise("sigmoid_mul", n_tok, d, dtype), [shared, "shared_gate"])
        shared = "shared_gate_mul"
    g.add_op("shared_add", Elementwise("residual_add", n_tok, d, dtype), ["expert_combine", shared])
    return "shared_add"
