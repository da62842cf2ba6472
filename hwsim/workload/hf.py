"""Reading a Hugging Face ``config.json``: every spelling into canonical fields.

One step turns the keys of any supported architecture into the canonical fields of
:class:`~hwsim.workload.spec.ModelSpec`: it unwraps ``text_config``, reads Mamba,
Mamba-2 and Jamba's state-space keys (:mod:`hwsim.workload.hf_ssm`) and T5 / BART
encoder-decoders (:mod:`hwsim.workload.hf_encdec`), refuses by name what hwsim cannot
model (other encoder-decoders and hybrids, linear-attention and recurrent layers),
reads the architecture's own defaults (a key absent from a saved config takes its
config class's default, not a global one), and notes what it simplified and which
unread keys look like misspellings of keys it reads.

Numbers are strict: an integer field takes an integer (not ``true``, not ``"32"``),
a float field a finite number, a flag a boolean.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from hwsim.workload.hf_attention import attention_fields
from hwsim.workload.hf_encdec import ENCDEC_TYPES, encdec_fields
from hwsim.workload.hf_keys import (
    COMMON_IGNORED_KEYS,
    DEFAULT_TIED,
    ENCODER_DECODER_TYPES,
    ENCODER_TYPES,
    GATED_TYPES,
    LAYERNORM_TYPES,
    LINEAR_ATTENTION_TYPES,
    POSITION_TABLE_TYPES,
    SSM_HYBRID_TYPES,
    SSM_TYPES,
    TYPE_DEFAULTS,
    UNGATED_TYPES,
    UNTIED_TYPES,
)
from hwsim.workload.hf_reader import ConfigReader as _Reader
from hwsim.workload.hf_ssm import HYBRID_SSM_TYPES, PURE_SSM_TYPES, jamba_fields, pure_ssm_fields

_GATED_ACTS = {"silu", "swish", "swiglu", "geglu"}


def refusal(data: dict[str, Any], model_type: str, architecture: str) -> str | None:
    """Why hwsim cannot model this config (by name), or None."""
    mt = model_type.lower()
    if mt in ENCDEC_TYPES:
        return None
    if mt in ENCODER_DECODER_TYPES or data.get("is_encoder_decoder") is True:
        name = ENCODER_DECODER_TYPES.get(mt, architecture or model_type or "this model")
        return f"encoder-decoder ({name}) is not modelled yet"
    if mt in SSM_TYPES and mt not in PURE_SSM_TYPES:
        return f"Mamba layers (state-space, {SSM_TYPES[mt]}) are not modelled yet"
    if mt in SSM_HYBRID_TYPES and mt not in HYBRID_SSM_TYPES:
        return (f"{SSM_HYBRID_TYPES[mt]}: a hybrid of attention and Mamba layers (state-space); "
                "Mamba layers are not modelled yet")
    if mt in LINEAR_ATTENTION_TYPES:
        return f"{LINEAR_ATTENTION_TYPES[mt]}: linear-attention / recurrent layers are not modelled yet"
    kinds = data.get("layer_types")
    if isinstance(kinds, list):
        odd = sorted({str(k) for k in kinds} - {"full_attention", "sliding_attention", "chunked_attention",
                                                "attention"})
        if odd:
            return f"layer_types {', '.join(odd)}: only attention layers are modelled yet"
    return None


def _text_part(data: dict[str, Any], notes: list[str]) -> tuple[dict[str, Any], str]:
    """The text model of a multimodal wrapper (``text_config``) and its key prefix."""
    text = data.get("text_config")
    if not isinstance(text, dict):
        return data, ""
    merged = dict(text)
    for key in ("architectures", "tie_word_embeddings", "name", "is_encoder"):
        if key in data and key not in merged:
            merged[key] = data[key]
    if isinstance(data.get("vision_config"), dict):
        kind = data["vision_config"].get("model_type", "vision")
        notes.append(f"vision tower ({kind}) not modelled: the text model only (text_config), "
                     "as for text-only prompts")
    return merged, "text_config."


def normalize(data: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Canonical :class:`ModelSpec` fields of an HF config mapping.

    Returns
    -------
    fields : dict
        Canonical field values (``notes`` among them).
    keys : dict
        Canonical field -> the key the file spells it with (for error messages).
    problems : list of str
        ``source: key: problem`` lines; empty if the config can be modelled.
    """
    notes: list[str] = []
    text, prefix = _text_part(data, notes)
    kind = text.get("model_type")
    if isinstance(kind, str) and kind.lower() in TYPE_DEFAULTS:
        text = TYPE_DEFAULTS[kind.lower()] | text
    r = _Reader(text, prefix)
    mt = r.text("model_type").lower()
    archs = r.raw("architectures")
    arch = str(archs[0]) if isinstance(archs, list) and archs else ""
    why = refusal(text, mt, arch)
    if prefix and not why:
        why = refusal(data, str(data.get("model_type", "")), arch)
    if why:
        return {}, {}, [f"{source}: {why}"]
    f: dict[str, Any] = {"model_type": mt, "architecture": arch}
    if mt in ENCDEC_TYPES:
        return _finish(encdec_fields(r, mt, notes) | {"architecture": arch}, r, text, prefix, notes, source)
    if mt in PURE_SSM_TYPES:
        return _finish(pure_ssm_fields(r, mt, notes) | {"architecture": arch}, r, text, prefix, notes, source)
    _core(r, f, mt)
    attention_fields(r, f, mt, notes)
    _ffn(r, f, mt, notes)
    _embeddings(r, f, mt, arch, notes)
    if mt in HYBRID_SSM_TYPES:
        jamba_fields(r, f)
    return _finish(f, r, text, prefix, notes, source)


def _finish(f: dict[str, Any], r: _Reader, text: dict[str, Any], prefix: str, notes: list[str],
            source: str) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    _near_misses(text, r.read, prefix, notes)
    f["notes"] = tuple(notes)
    if "name" in text and isinstance(text["name"], str):
        f["name"] = text["name"]
    problems = [f"{source}: {p}" for p in r.problems]
    return f, r.source, problems


def _core(r: _Reader, f: dict[str, Any], mt: str) -> None:
    f["num_hidden_layers"] = r.integer("num_hidden_layers", "n_layer", "n_layers", "num_layers",
                                   field="num_hidden_layers")
    f["hidden_size"] = r.integer("hidden_size", "n_embd", "n_embed", "d_model", field="hidden_size")
    f["num_attention_heads"] = r.integer("num_attention_heads", "n_head", "n_heads",
                                         field="num_attention_heads")
    f["vocab_size"] = r.integer("vocab_size", field="vocab_size")
    f["head_dim"] = r.integer("head_dim", field="head_dim")
    f["intermediate_size"] = r.integer("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size",
                                   field="intermediate_size")
    f["max_position_embeddings"] = r.integer("max_position_embeddings", "n_positions", "seq_length",
                                         field="max_position_embeddings")
    scaling = r.raw("rope_scaling")
    if isinstance(scaling, dict):
        factor = scaling.get("factor")
        if isinstance(factor, int | float) and not isinstance(factor, bool) and math.isfinite(factor) \
                and factor > 1:
            original = scaling.get("original_max_position_embeddings")
            base = original if isinstance(original, int) and not isinstance(original, bool) else None
            f["rope_scaling_factor"] = float(factor)
            f["rope_original_context"] = base
    act = r.text("hidden_activation", "hidden_act", "activation_function", default="gelu")
    f["hidden_act"] = act
    is_enc = r.raw("is_encoder")
    if isinstance(is_enc, bool):
        f["is_encoder"] = is_enc
    elif is_enc is not None:
        r.problems.append(f"{r.prefix}is_encoder: expected true or false, got {is_enc!r}")
    else:
        f["is_encoder"] = mt in ENCODER_TYPES
    # Norms: the architecture decides (Phi-3.5-MoE names an rms_norm_eps but uses LayerNorm).
    if mt in LAYERNORM_TYPES or mt in UNGATED_TYPES or mt == "modernbert":
        rms = False
    elif mt in GATED_TYPES:
        rms = True
    else:
        rms = r.has("rms_norm_eps")
    f["norm_type"] = "rmsnorm" if rms else "layernorm"
    f["norm_bias"] = not rms
    f["norms_per_layer"] = 4 if mt in ("gemma2", "gemma3", "gemma3_text") else 2
    tied_default = DEFAULT_TIED if mt not in UNTIED_TYPES else False
    f["tie_word_embeddings"] = r.flag("tie_word_embeddings", tied_default)


def _gated(r: _Reader, f: dict[str, Any], mt: str, notes: list[str]) -> bool:
    if mt in GATED_TYPES:
        return True
    if mt in UNGATED_TYPES:
        return False
    act = f["hidden_act"].lower()
    gated = act in _GATED_ACTS
    notes.append(f"model_type {mt or '(none)'!r} unknown to hwsim: FFN taken as "
                 f"{'gated' if gated else 'not gated'} from its activation {act!r}")
    return gated


def _ffn(r: _Reader, f: dict[str, Any], mt: str, notes: list[str]) -> None:
    f["gated_ffn"] = _gated(r, f, mt, notes)
    falcon = mt in ("falcon", "refinedweb", "refinedwebmodel")
    bias_types = {"gpt2", "gptj", "gpt_neox", "opt", "bloom", "bert", "roberta", "albert", "gpt_neo",
                  "gpt_bigcode", "electra", "xlm-roberta", "camembert", "distilbert", "biogpt", "codegen",
                  "phi", "starcoder2", "gpt_oss"}
    if falcon:
        f["mlp_bias"] = r.flag("bias", False)
    elif mt == "opt":
        f["mlp_bias"] = r.flag("enable_bias", True)
    else:
        f["mlp_bias"] = mt in bias_types or r.flag("mlp_bias", False)
    n = f["num_hidden_layers"] or 0
    experts = r.integer("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts",
                    field="num_local_experts") or 0
    f["num_local_experts"] = experts
    f["num_experts_per_tok"] = r.integer("num_experts_per_tok", "experts_per_token", "moe_top_k",
                                     "num_experts_per_token", default=0, field="num_experts_per_tok") or 0
    if not experts:
        return
    dense_width = f["intermediate_size"]
    expert_width = r.integer("moe_intermediate_size", "expert_intermediate_size",
                             field="moe_intermediate_size")
    f["router_bias"] = mt == "gpt_oss"
    if mt == "gpt_oss":
        f["mlp_bias"] = True
    moe = [True] * max(n, 1)
    if mt in ("qwen2_moe", "qwen3_moe", "olmoe"):
        step = r.integer("decoder_sparse_step", default=1) or 1
        only = set(r.int_list("mlp_only_layers") or [])
        moe = [i not in only and (i + 1) % step == 0 for i in range(n)]
        shared = r.integer("shared_expert_intermediate_size", default=0,
                           field="shared_expert_intermediate_size")
        f["shared_expert_intermediate_size"] = shared or 0
        f["shared_expert_gate"] = bool(shared)
    elif mt in ("deepseek_v2", "deepseek_v3", "deepseek"):
        first = r.integer("first_k_dense_replace", default=0) or 0
        freq = r.integer("moe_layer_freq", default=1) or 1
        moe = [i >= first and i % freq == 0 for i in range(n)]
        n_shared = r.integer("n_shared_experts", default=0, field="shared_expert_intermediate_size") or 0
        f["shared_expert_intermediate_size"] = n_shared * (expert_width or 0)
        r.read.update({"n_group", "topk_group", "routed_scaling_factor", "topk_method", "scoring_func",
                       "norm_topk_prob", "num_nextn_predict_layers"})
        mtp = text_int(r.data, "num_nextn_predict_layers")
        if mtp:
            notes.append(f"multi-token prediction module (num_nextn_predict_layers: {mtp}) not modelled: "
                         "inference without speculative decoding does not run it")
    elif mt in ("llama4_text", "llama4"):
        listed = r.int_list("moe_layers")
        step = r.integer("interleave_moe_layer_step", default=1) or 1
        layers = set(listed) if listed is not None else set(range(step - 1, n, step))
        moe = [i in layers for i in range(n)]
        expert_width = expert_width or dense_width
        f["shared_expert_intermediate_size"] = dense_width or 0
        f["intermediate_size"] = r.integer("intermediate_size_mlp", default=dense_width,
                                       field="intermediate_size")
    elif mt == "jamba":
        period = r.integer("expert_layer_period", default=2) or 2
        offset = r.integer("expert_layer_offset", default=1) or 0
        moe = [(i - offset) % period == 0 for i in range(n)]
    f["moe_intermediate_size"] = expert_width or dense_width
    f["moe_layers"] = tuple(moe) if not all(moe) else ()
    if not any(moe):
        f["num_local_experts"] = 0


def text_int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _embeddings(r: _Reader, f: dict[str, Any], mt: str, arch: str, notes: list[str]) -> None:
    d = f["hidden_size"]
    size = r.integer("embedding_size", "word_embed_proj_dim", field="embedding_size")
    f["embedding_size"] = size if size and size != d else None
    positions = 0
    if mt in POSITION_TABLE_TYPES:
        positions = f["max_position_embeddings"] or 0
        if mt == "opt":
            positions += 2  # OPT's learned positions are offset by two rows
    f["position_embeddings"] = positions
    types = r.integer("type_vocab_size", default=0, field="type_vocab_size") or 0
    f["type_vocab_size"] = types if f["is_encoder"] else 0
    f["embedding_norm"] = bool(f["is_encoder"]) or mt == "bloom"
    f["lm_head_bias"] = mt in ("gptj", "phi") or r.flag("lm_head_bias", False)
    f["final_norm"] = not f["is_encoder"]
    groups = r.integer("num_hidden_groups", default=None)
    if mt == "albert":
        f["shared_layer_groups"] = groups or 1
    encoder_head = arch.endswith("ForMaskedLM") or arch.endswith("ForPreTraining")
    f["mlm_head"] = bool(f["is_encoder"]) and encoder_head
    f["pooler"] = bool(f["is_encoder"]) and (arch.endswith("ForPreTraining") or arch.endswith("Model")
                                               or arch.endswith("ForSequenceClassification"))
    if f["mlm_head"]:
        notes.append("masked-LM head held in memory but not run: an encoder's prefill stops at the final "
                     "hidden states")


def _near_misses(data: dict[str, Any], read: set[str], prefix: str, notes: list[str]) -> None:
    """A note for each unread key that looks like a misspelling of a key hwsim reads."""
    known = sorted(read)
    for key in sorted(data):
        if key in read or key in COMMON_IGNORED_KEYS or not isinstance(key, str):
            continue
        close = [k for k in difflib.get_close_matches(key, known, n=1, cutoff=0.85) if k not in data]
        if close:
            notes.append(f"config key {prefix}{key!r} is not read; did you mean {close[0]!r}?")
