"""One layer's structure (:class:`LayerSpec`): the single source of every count.

A :class:`~hwsim.workload.spec.ModelSpec` expands into one :class:`LayerSpec` per layer
(:meth:`ModelSpec.layers`). Parameters, active parameters, weight bytes per chip, KV-cache
bytes per token and the operator graphs (:mod:`hwsim.workload.parallel`) are all derived
from it, so they cannot disagree.

A layer is a *mixer* (today attention: full, sliding-window, chunked-local or multi-head
latent attention; a state-space mixer is another kind of mixer) and an *FFN* (dense,
gated or not, or a mixture of experts with optional shared experts), joined sequentially
(pre-norm residual blocks) or in parallel off the same input (GPT-J, Falcon, GPT-NeoX).

Sharding on one chip (Megatron-LM): query heads, output rows, FFN width and each
expert's width are split over ``tp`` (the busiest chip holds ``ceil(n / tp)``); K/V
heads are split and replicated once ``tp`` exceeds them; MLA's down-projections and
latent are replicated; norms, the router and output biases are replicated; experts are
spread over ``ep``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

AttentionKind = Literal["full", "sliding", "chunked"]
NormKind = Literal["rmsnorm", "layernorm"]


def split(n: int, parts: int) -> int:
    """The busiest share when ``n`` things are split into ``parts``."""
    return math.ceil(n / parts)


@dataclass(frozen=True)
class MlaSpec:
    """Multi-head latent attention (DeepSeek-V2/V3): queries through an optional
    low-rank ``q_lora_rank`` bottleneck; keys and values from one cached latent of
    ``kv_lora_rank`` plus a shared ``qk_rope_head_dim`` rotary key per token."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def qk_head_dim(self) -> int:
        """Query/key width per head in the expanded form (no-rope + rope parts)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def latent_width(self) -> int:
        """Elements cached per token and layer: the latent and the rotary key."""
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True)
class AttentionSpec:
    """A layer's attention.

    ``window`` is the keys a query sees at most (``kind="sliding"``) or the chunk length
    (``kind="chunked"``: a query sees the keys of its own chunk only); both also cap what
    the layer keeps in its KV cache.
    """

    n_heads: int
    n_kv_heads: int
    head_dim: int
    kind: AttentionKind = "full"
    window: int | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    softcap: bool = False
    sinks: bool = False
    alibi: bool = False
    is_causal: bool = True
    mla: MlaSpec | None = None
    key_density: float = 1.0
    """Block-sparse masks: share of the key blocks each query block computes."""

    @property
    def v_head_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.head_dim

    def kv_tokens_held(self, context_len: int) -> int:
        """Tokens of a ``context_len``-token sequence this layer keeps in its cache."""
        return context_len if self.window is None else min(context_len, self.window)


@dataclass(frozen=True)
class FfnSpec:
    """A layer's FFN: dense (``n_experts == 0``) of ``width``, or ``n_experts`` experts of
    ``width`` each of which every token uses ``top_k``, plus shared experts of total width
    ``shared_width`` that every token uses (with a sigmoid gate when ``shared_gate``)."""

    width: int
    gated: bool
    bias: bool = False
    n_experts: int = 0
    top_k: int = 0
    shared_width: int = 0
    shared_gate: bool = False
    router_bias: bool = False

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def activation(self) -> str:
        """The elementwise kind between the up and down projections."""
        return "silu_mul" if self.gated else "gelu"


@dataclass(frozen=True)
class LayerSpec:
    """One transformer layer: mixer, FFN and how they are joined.

    ``n_norms`` counts the layer's norm modules (Gemma-2 has four, GPT-J one);
    ``parallel`` means attention and FFN both read the layer input and their outputs are
    summed into the residual; ``shared`` that the weights are those of the layer before
    (ALBERT): stored once, still read by every layer.
    """

    mixer: AttentionSpec
    ffn: FfnSpec
    hidden_size: int
    norm: NormKind = "rmsnorm"
    norm_bias: bool = False
    n_norms: int = 2
    parallel: bool = False
    shared: bool = False

    @property
    def label(self) -> str:
        """A short description (``sliding 4096 attention, MoE 8x top-2``)."""
        a = self.mixer
        attn = "MLA" if a.mla else (f"{a.kind} {a.window}" if a.window else a.kind) + " attention"
        f = self.ffn
        ffn = f"MoE {f.n_experts}x top-{f.top_k}" if f.is_moe else f"dense FFN {f.width}"
        return f"{attn}, {ffn}"


# ---------------------------------------------------------------------------------------
# Parameter counts


def attention_params(a: AttentionSpec, d: int, tp: int = 1) -> float:
    """Attention parameters of one layer on one chip (``tp`` shards)."""
    h = split(a.n_heads, tp)
    if a.mla:
        m = a.mla
        if m.q_lora_rank:
            q = d * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * h * m.qk_head_dim
        else:
            q = d * h * m.qk_head_dim
        kv = d * m.latent_width + m.kv_lora_rank + m.kv_lora_rank * h * (m.qk_nope_head_dim + m.v_head_dim)
        out = h * m.v_head_dim * d + (d if a.o_bias else 0)
        return float(q + kv + out)
    kv_h = split(a.n_kv_heads, tp)
    qkv = d * a.head_dim * (h + 2 * kv_h)
    if a.qkv_bias:
        qkv += a.head_dim * (h + 2 * kv_h)
    out = h * a.head_dim * d + (d if a.o_bias else 0)
    extra = (2 * a.head_dim if a.qk_norm else 0) + (h if a.sinks else 0)
    return float(qkv + out + extra)


def mlp_params(d: int, width: int, gated: bool, bias: bool) -> float:
    """One MLP (or expert) of ``width``: up (and gate) and down projections."""
    n_up = 2 * width if gated else width
    return float(d * n_up + width * d + ((n_up + d) if bias else 0))


def ffn_params(f: FfnSpec, d: int, tp: int = 1, ep: int = 1) -> tuple[float, float]:
    """(dense, expert) FFN parameters of one layer on one chip."""
    if not f.is_moe:
        return mlp_params(d, split(f.width, tp), f.gated, f.bias), 0.0
    router = d * f.n_experts + (f.n_experts if f.router_bias else 0)
    shared = mlp_params(d, split(f.shared_width, tp), f.gated, f.bias) if f.shared_width else 0.0
    shared += d if f.shared_gate else 0
    expert = mlp_params(d, split(f.width, tp), f.gated, f.bias) * split(f.n_experts, ep)
    return float(router + shared), expert


def norm_params(layer: LayerSpec) -> float:
    return float(layer.n_norms * layer.hidden_size * (2 if layer.norm_bias else 1))


def layer_params(layer: LayerSpec, tp: int = 1, ep: int = 1) -> tuple[float, float]:
    """(dense, expert) parameters one chip holds of ``layer`` (0, 0 for a shared layer)."""
    if layer.shared:
        return 0.0, 0.0
    return layer_weight_params(layer, tp, ep)


def layer_weight_params(layer: LayerSpec, tp: int = 1, ep: int = 1) -> tuple[float, float]:
    """(dense, expert) parameters ``layer`` reads on one chip, shared or not."""
    dense, expert = ffn_params(layer.ffn, layer.hidden_size, tp, ep)
    return dense + attention_params(layer.mixer, layer.hidden_size, tp) + norm_params(layer), expert


def active_layer_params(layer: LayerSpec) -> float:
    """Parameters one token uses in ``layer`` (its top-k experts, not all of them)."""
    dense, expert = layer_weight_params(layer)
    if layer.ffn.is_moe:
        expert = expert / layer.ffn.n_experts * layer.ffn.top_k
    return dense + expert


# ---------------------------------------------------------------------------------------
# KV cache


def kv_elements_per_token(a: AttentionSpec, tp: int = 1) -> int:
    """Cached elements per token of one layer on one chip: K and V of its KV heads, or
    MLA's latent (replicated over tp: every head reads all of it)."""
    if a.mla:
        return a.mla.latent_width
    return split(a.n_kv_heads, tp) * (a.head_dim + a.v_head_dim)


def kv_bytes_per_token(layer: LayerSpec, tp: int, dtype_bytes: float) -> float:
    """KV-cache bytes one cached token costs in ``layer`` on one chip (B); a window
    layer stops growing at its window (:meth:`AttentionSpec.kv_tokens_held`)."""
    return kv_elements_per_token(layer.mixer, tp) * dtype_bytes


def layer_kv_bytes(layer: LayerSpec, context_len: int, tp: int, dtype_bytes: float) -> float:
    """KV-cache bytes of one ``context_len``-token sequence in ``layer`` on one chip."""
    return layer.mixer.kv_tokens_held(context_len) * kv_bytes_per_token(layer, tp, dtype_bytes)


# ---------------------------------------------------------------------------------------
# Grouping layers into repeated segments

MAX_PERIOD = 8


def group_layers(layers: tuple[LayerSpec, ...], start: int = 0) -> list[tuple[int, int, int]]:
    """Split ``layers`` into ``(first, period, repeat)`` runs: consecutive repeats of one
    period of layers. Greedy from the front, each run covering as many layers as any
    period up to :data:`MAX_PERIOD` can (the shortest period on ties), so 3 dense then
    58 MoE layers are two runs and a 5:1 local/global pattern one run of period 6.
    ``first`` is offset by ``start``."""
    runs = []
    i = 0
    n = len(layers)
    while i < n:
        best_p, best_r = 1, 1
        for p in range(1, min(MAX_PERIOD, n - i) + 1):
            r = 1
            while i + (r + 1) * p <= n and layers[i + r * p:i + (r + 1) * p] == layers[i:i + p]:
                r += 1
            if (r >= 2 or p == 1) and p * r > best_p * best_r:
                best_p, best_r = p, r
        runs.append((start + i, best_p, best_r))
        i += best_p * best_r
    return runs


def stage_bounds(n_layers: int, pp: int) -> list[tuple[int, int]]:
    """``[first, end)`` layers of each pipeline stage: the first ``n_layers % pp``
    stages take one layer more when ``pp`` does not divide the layers."""
    base, extra = divmod(n_layers, pp)
    bounds, first = [], 0
    for s in range(pp):
        size = base + (1 if s < extra else 0)
        bounds.append((first, first + size))
        first += size
    return bounds
