"""Model specifications read from Hugging Face ``config.json`` fields.

A real HF ``config.json`` loads unchanged: unknown keys are ignored (HF configs carry
dozens), GPT-2 style names (``n_layer``, ``n_embd``, ``n_head``, ``n_inner``) are
accepted, and what hwsim needs is checked with errors naming the file and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwsim._paths import preset_names, resolve
from hwsim._yaml import read_yaml, validation_problems
from hwsim.errors import ConfigError

_GATED_ACTS = {"silu", "swish", "swiglu", "geglu"}
_ENCODER_TYPES = {"bert", "roberta", "deberta", "deberta-v2", "electra", "albert"}


class ModelSpec(BaseModel):
    """Transformer hyper-parameters (the *shape* of a model, not an instance)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    name: str = ""
    model_type: str = ""
    num_hidden_layers: int = Field(gt=0, validation_alias=AliasChoices("num_hidden_layers", "n_layer"))
    hidden_size: int = Field(gt=0, validation_alias=AliasChoices("hidden_size", "n_embd", "d_model"))
    num_attention_heads: int = Field(
        gt=0, validation_alias=AliasChoices("num_attention_heads", "n_head")
    )
    num_key_value_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    intermediate_size: int | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("intermediate_size", "n_inner", "ffn_dim")
    )
    vocab_size: int = Field(gt=0)
    hidden_act: str = Field(
        default="gelu", validation_alias=AliasChoices("hidden_act", "activation_function")
    )
    num_local_experts: int = Field(default=0, ge=0)
    num_experts_per_tok: int = Field(default=0, ge=0)
    tie_word_embeddings: bool = True  # the HF default; saved configs omit default values
    rms_norm_eps: float | None = None
    is_encoder: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must divide "
                f"hidden_size ({self.hidden_size})"
            )
        if self.num_attention_heads % self.n_kv_heads:
            raise ValueError(
                f"num_key_value_heads ({self.n_kv_heads}) must divide "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_local_experts and not 0 < self.num_experts_per_tok <= self.num_local_experts:
            raise ValueError(
                f"num_experts_per_tok ({self.num_experts_per_tok}) must be between 1 and "
                f"num_local_experts ({self.num_local_experts})"
            )
        return self

    # Derived shape ---------------------------------------------------------------------
    @property
    def n_kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def ffn_size(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def is_gated(self) -> bool:
        """SwiGLU-style FFN (gate and up projections) rather than one up projection."""
        return self.hidden_act.lower() in _GATED_ACTS

    @property
    def encoder_only(self) -> bool:
        if self.is_encoder is not None:
            return self.is_encoder
        return self.model_type.lower() in _ENCODER_TYPES

    @property
    def norm(self) -> str:
        """``rmsnorm`` for LLaMA-style models, ``layernorm`` otherwise."""
        return "rmsnorm" if self.rms_norm_eps is not None else "layernorm"

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 0

    def layer_param_count(self) -> int:
        """Parameters of one layer (attention + FFN + router; norms included)."""
        d, hd = self.hidden_size, self.d_head
        attn = d * hd * (self.num_attention_heads + 2 * self.n_kv_heads)
        attn += self.num_attention_heads * hd * d
        ffn_one = d * self.ffn_size * (3 if self.is_gated else 2)
        ffn = ffn_one * max(self.num_local_experts, 1) + d * self.num_local_experts
        return attn + ffn + 2 * d

    def param_count(self) -> int:
        """All parameters, counting a tied LM head once (encoders have no LM head here)."""
        emb = self.vocab_size * self.hidden_size
        head = 0 if (self.tie_word_embeddings or self.encoder_only) else emb
        return self.num_hidden_layers * self.layer_param_count() + emb + head + self.hidden_size


def list_models() -> list[str]:
    """Names of the shipped model specs (``workloads/*.yaml``)."""
    return preset_names("workloads")


def spec_from_dict(data: Any, source: str = "<dict>", name: str = "") -> ModelSpec:
    """Validate a mapping (HF config fields) into a :class:`ModelSpec`."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: <root>: expected a mapping of config.json fields"])
    data = dict(data)
    data.setdefault("name", name)
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, exc)) from None


def load_model_spec(name_or_path: str | Path) -> ModelSpec:
    """Load a shipped model (``"llama2-7b"``) or an HF ``config.json``/YAML path."""
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
