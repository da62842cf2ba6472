"""Model specifications read from Hugging Face ``config.json`` files.

A real HF ``config.json`` loads unchanged: :func:`hwsim.workload.hf.normalize` reads
every spelling hwsim knows into the canonical fields of :class:`ModelSpec` (GPT-2's
``n_layer``, Falcon's ``n_head_kv``, Qwen's ``num_experts``, DeepSeek's
``n_routed_experts``...), refuses what it cannot model by name, and notes near-misses
of the keys it reads. :meth:`ModelSpec.layers` then describes every layer
(:class:`~hwsim.workload.layers.LayerSpec`); every count is derived from those.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwsim._paths import preset_names, resolve
from hwsim._yaml import read_yaml
from hwsim.errors import ConfigError, join_path
from hwsim.workload.hf import normalize
from hwsim.workload.layers import (
    AttentionSpec,
    FfnSpec,
    LayerSpec,
    MlaSpec,
    SsmSpec,
    active_layer_params,
    layer_params,
    layer_weight_params,
)


class ModelSpec(BaseModel):
    """Transformer hyper-parameters (the *shape* of a model, not an instance), in
    canonical fields. Per-layer lists (``layer_attention``, ``moe_layers``) are cycled
    when a model is lowered with more layers than they list; empty means uniform."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    model_type: str = ""
    architecture: str = ""
    num_hidden_layers: int = Field(gt=0, le=100_000, strict=True)  # engines walk the layers
    hidden_size: int = Field(gt=0, strict=True)
    num_attention_heads: int = Field(gt=0, strict=True)
    num_key_value_heads: int | None = Field(default=None, gt=0, strict=True)
    head_dim: int | None = Field(default=None, gt=0, strict=True)
    intermediate_size: int | None = Field(default=None, gt=0, strict=True)
    vocab_size: int = Field(gt=0, strict=True)
    hidden_act: str = "gelu"
    gated_ffn: bool | None = Field(default=None, strict=True)
    norm_type: Literal["rmsnorm", "layernorm"] = "layernorm"
    norm_bias: bool | None = Field(default=None, strict=True)
    norms_per_layer: int = Field(default=2, ge=1, strict=True)
    tie_word_embeddings: bool = Field(default=True, strict=True)
    is_encoder: bool | None = Field(default=None, strict=True)
    max_position_embeddings: int | None = Field(default=None, gt=0, strict=True)
    rope_scaling_factor: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    rope_original_context: int | None = Field(default=None, gt=0, strict=True)
    # attention
    attention_bias: bool = Field(default=False, strict=True)
    attention_out_bias: bool = Field(default=False, strict=True)
    qk_norm: bool = Field(default=False, strict=True)
    attention_sinks: bool = Field(default=False, strict=True)
    alibi: bool = Field(default=False, strict=True)
    attn_softcap: bool = Field(default=False, strict=True)
    final_softcap: bool = Field(default=False, strict=True)
    parallel_block: bool = Field(default=False, strict=True)
    sliding_window: int | None = Field(default=None, gt=0, strict=True)
    attention_chunk_size: int | None = Field(default=None, gt=0, strict=True)
    #: Block-sparse attention: the share of its (causal, windowed) key blocks each query
    #: block computes (BigBird's window + global + random blocks, strided or dilated
    #: masks at block granularity); 1: dense.
    attention_key_density: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
    layer_attention: tuple[Literal["full", "sliding", "chunked"], ...] = ()
    q_lora_rank: int | None = Field(default=None, gt=0, strict=True)
    kv_lora_rank: int | None = Field(default=None, gt=0, strict=True)
    qk_nope_head_dim: int | None = Field(default=None, gt=0, strict=True)
    qk_rope_head_dim: int | None = Field(default=None, gt=0, strict=True)
    v_head_dim: int | None = Field(default=None, gt=0, strict=True)
    # FFN and mixture of experts
    mlp_bias: bool = Field(default=False, strict=True)
    num_local_experts: int = Field(default=0, ge=0, strict=True)
    num_experts_per_tok: int = Field(default=0, ge=0, strict=True)
    moe_intermediate_size: int | None = Field(default=None, gt=0, strict=True)
    shared_expert_intermediate_size: int = Field(default=0, ge=0, strict=True)
    shared_expert_gate: bool = Field(default=False, strict=True)
    router_bias: bool = Field(default=False, strict=True)
    moe_layers: tuple[bool, ...] = ()
    has_ffn: bool = Field(default=True, strict=True)
    # encoder-decoder (T5, BART): the first num_encoder_layers layers are the encoder's
    is_encoder_decoder: bool = Field(default=False, strict=True)
    num_encoder_layers: int = Field(default=0, ge=0, strict=True)
    relative_attention_buckets: int = Field(default=0, ge=0, strict=True)
    # state-space (Mamba) mixers: every layer (``ssm_layers`` empty) or those marked True
    ssm_kind: Literal["mamba", "mamba2"] | None = None
    ssm_layers: tuple[bool, ...] = ()
    ssm_d_inner: int | None = Field(default=None, gt=0, strict=True)
    ssm_d_state: int = Field(default=16, gt=0, strict=True)
    ssm_d_conv: int = Field(default=4, gt=0, strict=True)
    ssm_dt_rank: int = Field(default=0, ge=0, strict=True)
    ssm_n_heads: int = Field(default=0, ge=0, strict=True)
    ssm_head_dim: int = Field(default=0, ge=0, strict=True)
    ssm_n_groups: int = Field(default=1, gt=0, strict=True)
    ssm_chunk_size: int = Field(default=256, gt=0, strict=True)
    ssm_proj_bias: bool = Field(default=False, strict=True)
    ssm_conv_bias: bool = Field(default=True, strict=True)
    ssm_bc_norms: bool = Field(default=False, strict=True)
    # embeddings and heads
    embedding_size: int | None = Field(default=None, gt=0, strict=True)
    position_embeddings: int = Field(default=0, ge=0, strict=True)
    type_vocab_size: int = Field(default=0, ge=0, strict=True)
    embedding_norm: bool = Field(default=False, strict=True)
    final_norm: bool = Field(default=True, strict=True)
    lm_head_bias: bool = Field(default=False, strict=True)
    shared_layer_groups: int | None = Field(default=None, gt=0, strict=True)
    mlm_head: bool = Field(default=False, strict=True)
    pooler: bool = Field(default=False, strict=True)
    notes: tuple[str, ...] = ()
    """What reading the config simplified or suspects (copied into workload warnings)."""

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.head_dim is None and not self.is_mla and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must divide "
                             f"hidden_size ({self.hidden_size})")
        if self.num_attention_heads % self.n_kv_heads:
            raise ValueError(f"num_key_value_heads ({self.n_kv_heads}) must divide "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.num_local_experts and not 0 < self.num_experts_per_tok <= self.num_local_experts:
            raise ValueError(f"num_experts_per_tok ({self.num_experts_per_tok}) must be between 1 and "
                             f"num_local_experts ({self.num_local_experts})")
        if self.is_moe and self.moe_layers and not any(self.moe_layers):
            raise ValueError("moe_layers: an MoE model needs at least one MoE layer")
        if self.ssm_kind is not None:
            if self.ssm_d_inner is None:
                raise ValueError("ssm_d_inner: a state-space model needs its inner width")
            if self.ssm_kind == "mamba" and not self.ssm_dt_rank:
                raise ValueError("ssm_dt_rank: a Mamba mixer needs its time-step rank")
            if self.ssm_kind == "mamba2" and self.ssm_n_heads * self.ssm_head_dim != self.ssm_d_inner:
                raise ValueError(f"ssm_n_heads x ssm_head_dim ({self.ssm_n_heads} x {self.ssm_head_dim}) "
                                 f"must equal ssm_d_inner ({self.ssm_d_inner})")
        if self.is_encoder_decoder and not 0 < self.num_encoder_layers < self.num_hidden_layers:
            raise ValueError(f"num_encoder_layers ({self.num_encoder_layers}) must leave decoder layers of "
                             f"the {self.num_hidden_layers}")
        if self.ssm_layers and self.ssm_kind is None:
            raise ValueError("ssm_layers: needs ssm_kind (the state-space mixer of those layers)")
        return self

    # Derived shape ---------------------------------------------------------------------
    @property
    def n_kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def d_head(self) -> int:
        """Query/key width per head (MLA: the expanded no-rope + rope width)."""
        if self.is_mla:
            return (self.qk_nope_head_dim or 0) + (self.qk_rope_head_dim or 0)
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def ffn_size(self) -> int:
        """Width of the dense FFN (of each expert in an all-MoE model)."""
        if self.is_moe and not self.moe_layers and self.moe_intermediate_size:
            return self.moe_intermediate_size
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def is_gated(self) -> bool:
        """SwiGLU/GeGLU FFN (gate and up projections) rather than one up projection."""
        if self.gated_ffn is not None:
            return self.gated_ffn
        return self.hidden_act.lower() in ("silu", "swish", "swiglu", "geglu")

    @property
    def encoder_only(self) -> bool:
        return bool(self.is_encoder)

    @property
    def norm(self) -> str:
        """``rmsnorm`` (LLaMA style) or ``layernorm``."""
        return self.norm_type

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def is_ssm(self) -> bool:
        """Some layer is a state-space (Mamba) mixer."""
        return self.ssm_kind is not None and (not self.ssm_layers or any(self.ssm_layers))

    def is_ssm_layer(self, i: int) -> bool:
        if self.ssm_kind is None:
            return False
        return not self.ssm_layers or self.ssm_layers[i % len(self.ssm_layers)]

    def _ssm(self) -> SsmSpec:
        assert self.ssm_kind is not None and self.ssm_d_inner is not None
        return SsmSpec(self.ssm_kind, self.ssm_d_inner, self.ssm_d_state, self.ssm_d_conv, self.ssm_dt_rank,
                       self.ssm_n_heads, self.ssm_head_dim, self.ssm_n_groups, self.ssm_chunk_size,
                       self.ssm_proj_bias, self.ssm_conv_bias, self.ssm_bc_norms)

    @property
    def context_limit(self) -> int | None:
        """Longest context the model is made for: ``max_position_embeddings``, extended
        by a ``rope_scaling`` factor (None if the config states neither)."""
        if self.max_position_embeddings is None:
            return None
        if self.rope_scaling_factor:
            base = self.rope_original_context or self.max_position_embeddings
            return max(self.max_position_embeddings, round(base * self.rope_scaling_factor))
        return self.max_position_embeddings

    # Layers ------------------------------------------------------------------------------
    @property
    def num_decoder_layers(self) -> int:
        """Layers of the decoder stack (all layers unless encoder-decoder)."""
        return self.num_hidden_layers - self.num_encoder_layers

    def is_decoder_layer(self, i: int) -> bool:
        return not self.is_encoder_decoder or i >= self.num_encoder_layers

    def _attention(self, i: int) -> AttentionSpec:
        kind = self.layer_attention[i % len(self.layer_attention)] if self.layer_attention else "full"
        window = {"sliding": self.sliding_window, "chunked": self.attention_chunk_size}.get(kind)
        mla = None
        if self.is_mla:
            mla = MlaSpec(self.q_lora_rank, self.kv_lora_rank or 0, self.qk_nope_head_dim or 0,
                          self.qk_rope_head_dim or 0, self.v_head_dim or 0)
        return AttentionSpec(
            n_heads=self.num_attention_heads, n_kv_heads=self.n_kv_heads, head_dim=self.d_head,
            kind=kind, window=window, qkv_bias=self.attention_bias, o_bias=self.attention_out_bias,
            qk_norm=self.qk_norm, softcap=self.attn_softcap, sinks=self.attention_sinks, alibi=self.alibi,
            is_causal=not self.encoder_only and self.is_decoder_layer(i), mla=mla,
            rel_bias_buckets=self.relative_attention_buckets if i in (0, self.num_encoder_layers) else 0,
            key_density=self.attention_key_density)

    def _ffn(self, i: int) -> FfnSpec:
        if not self.has_ffn:
            return FfnSpec(0, False)
        moe = self.is_moe and (not self.moe_layers or self.moe_layers[i % len(self.moe_layers)])
        if not moe:
            return FfnSpec(self.intermediate_size or 4 * self.hidden_size, self.is_gated, self.mlp_bias)
        return FfnSpec(self.moe_intermediate_size or self.ffn_size, self.is_gated, self.mlp_bias,
                       n_experts=self.num_local_experts, top_k=self.num_experts_per_tok,
                       shared_width=self.shared_expert_intermediate_size,
                       shared_gate=self.shared_expert_gate, router_bias=self.router_bias)

    def layer(self, i: int) -> LayerSpec:
        """Layer ``i`` (0-based) of the model (each built once per spec)."""
        cache = self._layer_cache
        layer = cache.get(i)
        if layer is None:
            layer = cache[i] = self._build_layer(i)
        return layer

    @functools.cached_property
    def _layer_cache(self) -> dict[int, LayerSpec]:
        # Frozen spec: its layers never change, and engines ask for them per pass.
        return {}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> ModelSpec:
        """A copy with ``update`` applied; the copy derives its own layers."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("_layer_cache", None)
        return copied

    def with_layers(self, n_layers: int) -> ModelSpec:
        """The model cut (or its layer pattern repeated) to ``n_layers`` layers; an
        encoder-decoder to ``n_layers`` in each stack."""
        if self.is_encoder_decoder:
            return self.model_copy(update={"num_hidden_layers": 2 * n_layers, "num_encoder_layers": n_layers})
        return self.model_copy(update={"num_hidden_layers": n_layers})

    def _build_layer(self, i: int) -> LayerSpec:
        shared = False
        if self.shared_layer_groups:
            per_group = max(1, self.num_hidden_layers // self.shared_layer_groups)
            shared = i % per_group != 0
        norm_bias = self.norm_type == "layernorm" if self.norm_bias is None else self.norm_bias
        mixer = self._ssm() if self.is_ssm_layer(i) else self._attention(i)
        cross, n_norms = None, self.norms_per_layer
        if self.is_encoder_decoder and self.is_decoder_layer(i):
            a = self._attention(i)
            cross = replace(a, is_causal=False, rel_bias_buckets=0)
            n_norms += 1
        return LayerSpec(mixer, self._ffn(i), self.hidden_size, self.norm_type, norm_bias,
                         n_norms, self.parallel_block, shared, cross)

    def layers(self) -> tuple[LayerSpec, ...]:
        """Every layer, in order."""
        return tuple(self.layer(i) for i in range(self.num_hidden_layers))

    # Parameters --------------------------------------------------------------------------
    @property
    def embedding_width(self) -> int:
        return self.embedding_size or self.hidden_size

    def _norm_params(self, width: int) -> int:
        bias = self.norm_type == "layernorm" if self.norm_bias is None else self.norm_bias
        return width * (2 if bias else 1)

    def embedding_param_count(self) -> int:
        """Token, position and token-type tables, their norm and ALBERT's projection."""
        e, d = self.embedding_width, self.hidden_size
        stacks = 2 if self.is_encoder_decoder else 1  # each stack its own positions and norm
        n = (self.vocab_size + stacks * self.position_embeddings + self.type_vocab_size) * e
        n += stacks * self._norm_params(e) if self.embedding_norm else 0
        n += e * d + d if e != d else 0
        return n

    def head_param_count(self) -> int:
        """Final norm, untied LM head (and its bias), or an encoder's pooler and masked-LM head."""
        d, e = self.hidden_size, self.embedding_width
        n = (2 if self.is_encoder_decoder else 1) * self._norm_params(d) if self.final_norm else 0
        if self.encoder_only:
            n += (d * d + d) if self.pooler else 0
            n += (d * e + e + self._norm_params(e) + self.vocab_size) if self.mlm_head else 0
            return n
        n += 0 if self.tie_word_embeddings else self.vocab_size * d
        return n + (self.vocab_size if self.lm_head_bias else 0)

    def layer_param_count(self, i: int = 0) -> int:
        """Parameters of layer ``i`` (attention, FFN with every expert, norms)."""
        return int(sum(layer_weight_params(self.layer(i))))

    def param_count(self) -> int:
        """All parameters, counting a tied LM head and shared layers once."""
        layers = sum(sum(layer_params(layer)) for layer in self.layers())
        return int(layers) + self.embedding_param_count() + self.head_param_count()

    def active_param_count(self) -> int:
        """Parameters one token uses: its top-k experts only, no embedding table (a
        lookup), the LM head once."""
        layers = sum(active_layer_params(layer) for layer in self.layers())
        head = self.vocab_size * self.hidden_size if not self.encoder_only else 0
        return int(layers) + head


def list_models() -> list[str]:
    """Names of the shipped model specs (``workloads/*.yaml`` and ``workloads/<name>/config.json``)."""
    return preset_names("workloads")


def _problems(source: str, exc: ValidationError, keys: dict[str, str]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if p not in ("function-after",))
        if loc and isinstance(loc[0], str) and loc[0] in keys:
            loc = (keys[loc[0]], *loc[1:])
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        lines.append(f"{source}: {join_path(loc) if loc else '<root>'}: {msg}")
    return lines


def spec_from_dict(data: Any, source: str = "<dict>", name: str = "") -> ModelSpec:
    """Read a mapping of HF config fields into a :class:`ModelSpec`."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: <root>: expected a mapping of config.json fields"])
    fields, keys, problems = normalize(data, source)
    hints = [f"{source}: {n}" for n in fields.get("notes", ()) if "did you mean" in n]
    if problems:
        raise ConfigError(problems + hints)
    fields = {k: v for k, v in fields.items() if v is not None or k in ("head_dim",)}
    fields.setdefault("name", name)
    if not fields.get("name"):
        fields["name"] = name
    try:
        return ModelSpec.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(_problems(source, exc, keys) + hints) from None


def load_model_spec(name_or_path: str | Path) -> ModelSpec:
    """Load a shipped model (``"llama2-7b"``, ``"deepseek-v3"``) or an HF ``config.json``/YAML path."""
    path = resolve(name_or_path, "workloads")
    if path is None:
        import difflib

        close = difflib.get_close_matches(str(name_or_path), list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            [f"{name_or_path}: unknown model or file{hint} (known: {', '.join(list_models())})"]
        )
    stem = path.parent.name if path.name == "config.json" else path.stem
    return spec_from_dict(read_yaml(path), str(path), name=stem)
