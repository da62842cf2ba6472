"""One layer's structure (:class:`LayerSpec`): the single source of every count.

A :class:`~hwsim.workload.spec.ModelSpec` expands into one :class:`LayerSpec` per layer
(:meth:`ModelSpec.layers`). Parameters, active parameters, weight bytes per chip, KV-cache
bytes per token and the operator graphs (:mod:`hwsim.workload.parallel`) are all derived
from it, so they cannot disagree.

A layer is a *mixer* (attention: full, sliding-window, chunked-local or multi-head
latent attention; or a Mamba / Mamba-2 state-space mixer, :class:`SsmSpec`) and an
*FFN* (dense, gated or not, a mixture of experts with optional shared experts, or none
for a Mamba block), joined sequentially
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
from typing import ClassVar, Literal

AttentionKind = Literal["full", "sliding", "chunked"]
SsmKind = Literal["mamba", "mamba2"]
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
    rel_bias_buckets: int = 0
    """T5's learned relative-position bias (buckets x heads), in the first layer of each stack."""

    @property
    def v_head_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.head_dim

    def kv_tokens_held(self, context_len: int) -> int:
        """Tokens of a ``context_len``-token sequence this layer keeps in its cache."""
        return context_len if self.window is None else min(context_len, self.window)



@dataclass(frozen=True)
class SsmSpec:
    """A selective state-space mixer (Mamba: Gu & Dao 2023; Mamba-2: Dao & Gu 2024).

    ``d_inner`` channels (``expand * hidden``) carry a ``d_state``-wide state each.
    Mamba (``kind="mamba"``): ``x_proj`` makes a ``dt_rank``-wide time step and B, C
    per token, ``dt_proj`` widens the step back to every channel; A is per channel
    and state. Mamba-2 (``kind="mamba2"``): one projection makes x, z, B, C (``n_groups``
    groups) and a scalar step per head; the ``n_heads`` heads of ``head_dim`` channels
    share a scalar A each, which lets prefill run as chunked matrix products (SSD) over
    ``chunk``-token chunks. ``bc_norms``: Jamba's RMSNorms of dt, B and C (weighted).

    In place of a KV cache each sequence keeps a fixed state: the last ``d_conv - 1``
    inputs of the causal convolution and the ``d_inner x d_state`` SSM state.
    """

    kind: SsmKind
    d_inner: int
    d_state: int
    d_conv: int
    dt_rank: int = 0
    n_heads: int = 0
    head_dim: int = 0
    n_groups: int = 1
    chunk: int = 256
    proj_bias: bool = False
    conv_bias: bool = True
    bc_norms: bool = False

    # What an attention mixer has and a state-space one has not (read by code that
    # handles either): no latent attention, no window, always causal.
    mla: ClassVar[None] = None
    window: ClassVar[None] = None
    is_causal: ClassVar[bool] = True

    def local(self, tp: int) -> tuple[int, int, int]:
        """(channels, heads, groups) one chip holds: channels and heads split over tp,
        B/C groups split and replicated once tp exceeds them (Mamba: one head per channel)."""
        if self.kind == "mamba":
            c = split(self.d_inner, tp)
            return c, c, 1
        h = split(self.n_heads, tp)
        return h * self.head_dim, h, max(1, self.n_groups // tp)

    def conv_channels(self, tp: int = 1) -> int:
        """Channels of the causal convolution on one chip (Mamba-2: x, B and C)."""
        c, _, g = self.local(tp)
        return c if self.kind == "mamba" else c + 2 * g * self.d_state

    def state_elements(self, tp: int = 1) -> int:
        """Elements of one sequence's recurrent state on one chip: the convolution's
        last ``d_conv - 1`` inputs and the SSM state (``channels x d_state``)."""
        c, _, _ = self.local(tp)
        return self.conv_channels(tp) * (self.d_conv - 1) + c * self.d_state

@dataclass(frozen=True)
class FfnSpec:
    """A layer's FFN: dense (``n_experts == 0``) of ``width``, or ``n_experts`` experts of
    ``width`` each of which every token uses ``top_k``, plus shared experts of total width
    ``shared_width`` that every token uses (with a sigmoid gate when ``shared_gate``).
    ``width == 0``: no FFN (a Mamba block is a norm, a mixer and a residual)."""

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
    def present(self) -> bool:
        return self.width > 0

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
    (ALBERT): stored once, still read by every layer. ``cross``: an encoder-decoder's
    decoder layer attends to the encoder output between its self-attention and its FFN.
    """

    mixer: AttentionSpec | SsmSpec
    ffn: FfnSpec
    hidden_size: int
    norm: NormKind = "rmsnorm"
    norm_bias: bool = False
    n_norms: int = 2
    parallel: bool = False
    shared: bool = False
    cross: AttentionSpec | None = None

    @property
    def label(self) -> str:
        """A short description (``sliding 4096 attention, MoE 8x top-2``)."""
        a = self.mixer
        if isinstance(a, SsmSpec):
            attn = f"{'Mamba-2' if a.kind == 'mamba2' else 'Mamba'} d_state {a.d_state}"
        else:
            attn = "MLA" if a.mla else (f"{a.kind} {a.window}" if a.window else a.kind) + " attention"
        f = self.ffn
        ffn = f"MoE {f.n_experts}x top-{f.top_k}" if f.is_moe else f"dense FFN {f.width}"
        if self.cross is not None:
            attn += ", cross-attention"
        return f"{attn}, {ffn}" if f.present else attn

    @property
    def attention(self) -> AttentionSpec | None:
        """The layer's attention (None for a state-space layer)."""
        return self.mixer if isinstance(self.mixer, AttentionSpec) else None


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
    extra = (2 * a.head_dim if a.qk_norm else 0) + (h if a.sinks else 0) + a.rel_bias_buckets * h
    return float(qkv + out + extra)


def ssm_params(s: SsmSpec, d: int, tp: int = 1) -> float:
    """State-space mixer parameters of one layer on one chip, as transformers'
    ``MambaMixer`` / ``Mamba2Mixer`` / ``JambaMambaMixer`` build them."""
    c, h, g = s.local(tp)
    bias = 1 if s.proj_bias else 0
    conv = s.conv_channels(tp)
    conv_params = conv * s.d_conv + (conv if s.conv_bias else 0)
    out = c * d + (d * bias)
    if s.kind == "mamba":
        in_proj = d * 2 * c + 2 * c * bias
        x_proj = c * (s.dt_rank + 2 * s.d_state)
        dt_proj = s.dt_rank * c + c
        a_d = c * s.d_state + c  # A_log, D
        norms = s.dt_rank + 2 * s.d_state if s.bc_norms else 0
        return float(in_proj + conv_params + x_proj + dt_proj + a_d + out + norms)
    width = c + conv + h  # z, x/B/C, dt
    in_proj = d * width + width * bias
    return float(in_proj + conv_params + 3 * h + c + out)  # dt_bias, A_log, D; gated norm


def mixer_params(layer: LayerSpec, tp: int = 1) -> float:
    """The mixer's parameters (attention or state space) on one chip."""
    m = layer.mixer
    if isinstance(m, SsmSpec):
        return ssm_params(m, layer.hidden_size, tp)
    return attention_params(m, layer.hidden_size, tp)


def mlp_params(d: int, width: int, gated: bool, bias: bool) -> float:
    """One MLP (or expert) of ``width``: up (and gate) and down projections."""
    n_up = 2 * width if gated else width
    return float(d * n_up + width * d + ((n_up + d) if bias else 0))


def ffn_params(f: FfnSpec, d: int, tp: int = 1, ep: int = 1) -> tuple[float, float]:
    """(dense, expert) FFN parameters of one layer on one chip."""
    if not f.present:
        return 0.0, 0.0
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
    cross = attention_params(layer.cross, layer.hidden_size, tp) if layer.cross is not None else 0.0
    return dense + mixer_params(layer, tp) + cross + norm_params(layer), expert


def active_layer_params(layer: LayerSpec) -> float:
    """Parameters one token uses in ``layer`` (its top-k experts, not all of them)."""
    dense, expert = layer_weight_params(layer)
    if layer.ffn.is_moe:
        expert = expert / layer.ffn.n_experts * layer.ffn.top_k
    return dense + expert


# ---------------------------------------------------------------------------------------
# KV cache


def kv_elements_per_token(a: AttentionSpec | SsmSpec, tp: int = 1) -> int:
    """Cached elements per token of one layer on one chip: K and V of its KV heads, or
    MLA's latent (replicated over tp: every head reads all of it); none for a
    state-space layer, whose state does not grow (:func:`layer_state_bytes`)."""
    if isinstance(a, SsmSpec):
        return 0
    if a.mla:
        return a.mla.latent_width
    return split(a.n_kv_heads, tp) * (a.head_dim + a.v_head_dim)


def kv_bytes_per_token(layer: LayerSpec, tp: int, dtype_bytes: float) -> float:
    """KV-cache bytes one cached token costs in ``layer`` on one chip (B); a window
    layer stops growing at its window (:meth:`AttentionSpec.kv_tokens_held`)."""
    return kv_elements_per_token(layer.mixer, tp) * dtype_bytes


def layer_state_bytes(layer: LayerSpec, tp: int, dtype_bytes: float) -> float:
    """Fixed bytes one sequence keeps in a state-space ``layer`` on one chip (conv and
    SSM state, in the cache dtype, as vLLM's default ``mamba_ssm_cache_dtype="auto"``);
    0 for an attention layer."""
    m = layer.mixer
    return m.state_elements(tp) * dtype_bytes if isinstance(m, SsmSpec) else 0.0


def layer_kv_bytes(layer: LayerSpec, context_len: int, tp: int, dtype_bytes: float) -> float:
    """KV-cache bytes of one ``context_len``-token sequence in ``layer`` on one chip
    (a state-space layer: its fixed state, once the sequence has a token)."""
    m = layer.mixer
    if isinstance(m, SsmSpec):
        return layer_state_bytes(layer, tp, dtype_bytes) if context_len > 0 else 0.0
    return m.kv_tokens_held(context_len) * kv_bytes_per_token(layer, tp, dtype_bytes)


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
