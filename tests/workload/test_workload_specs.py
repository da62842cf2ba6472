"""Model specs: every shipped model loads with its published parameter count, real HF
config.json files load unchanged, and invalid specs fail naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload import ModelSpec, spec_from_dict

#: Shipped models refused by name until their layers are modelled (issue 13, items 7-8).
MODELS = hwsim.list_models()

# model -> (published parameter count, relative tolerance)
PUBLISHED_PARAMS = {
    "llama2-7b": (6.74e9, 0.001),
    "llama2-13b": (13.0e9, 0.01),
    "llama2-70b": (6.9e10, 0.01),
    "llama3-8b": (8.03e9, 0.001),
    "llama3-70b": (70.6e9, 0.01),
    "mixtral-8x7b": (4.67e10, 0.001),
    "gpt3-175b": (1.75e11, 0.01),
    "bert-large": (3.35e8, 0.02),
}

# meta-llama/Llama-2-7b-hf config.json, verbatim (HF keys hwsim does not use included).
LLAMA2_7B_HF = {
    "_name_or_path": "meta-llama/Llama-2-7b-hf",
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}

# openai-community/gpt2 config.json, verbatim: GPT-2 key names, and no
# tie_word_embeddings key (HF's PretrainedConfig default, True, applies).
GPT2_HF = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257,
}

# A small valid LLaMA-style spec; each invalid case changes one field.
TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 100,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
}


def _write_config(tmp_path: Path, data: dict[str, Any], folder: str = "model") -> Path:
    path = tmp_path / folder / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_expected_models_are_shipped() -> None:
    """list_models() names at least the models the project documents."""
    assert set(MODELS) >= set(PUBLISHED_PARAMS)


@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_loads(name: str) -> None:
    """Each shipped model validates into a ModelSpec named after its file."""
    spec = hwsim.load_model_spec(name)
    assert isinstance(spec, ModelSpec)
    assert spec.name == name
    assert spec.param_count() > 0


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_param_count_matches_published(name: str) -> None:
    """param_count() is within tolerance of the model's published parameter count."""
    published, rel = PUBLISHED_PARAMS[name]
    assert hwsim.load_model_spec(name).param_count() == pytest.approx(published, rel=rel)


def test_model_kinds() -> None:
    """LLaMA is gated/RMSNorm, GPT-3 GELU/LayerNorm, Mixtral MoE, BERT an encoder."""
    llama = hwsim.load_model_spec("llama2-7b")
    gpt3 = hwsim.load_model_spec("gpt3-175b")
    mixtral = hwsim.load_model_spec("mixtral-8x7b")
    bert = hwsim.load_model_spec("bert-large")
    assert llama.is_gated and llama.norm == "rmsnorm" and not llama.is_moe and not llama.encoder_only
    assert not gpt3.is_gated and gpt3.norm == "layernorm" and not gpt3.encoder_only
    assert mixtral.is_moe and mixtral.num_local_experts == 8 and mixtral.num_experts_per_tok == 2
    assert bert.encoder_only and not bert.is_gated


def test_gqa_kv_heads() -> None:
    """llama2-70b and llama3-8b use 8 KV heads (GQA); llama2-7b is plain MHA."""
    assert hwsim.load_model_spec("llama2-70b").n_kv_heads == 8
    assert hwsim.load_model_spec("llama3-8b").n_kv_heads == 8
    spec = hwsim.load_model_spec("llama2-7b")
    assert spec.n_kv_heads == spec.num_attention_heads == 32
    assert spec.d_head == 128


def test_tied_embeddings_count_the_head_once() -> None:
    """Tying the LM head to the embedding removes exactly vocab x hidden parameters."""
    tied = hwsim.load_model_spec("gpt3-175b")
    assert tied.tie_word_embeddings
    untied = tied.model_copy(update={"tie_word_embeddings": False})
    assert untied.param_count() - tied.param_count() == tied.vocab_size * tied.hidden_size
    layers = tied.num_hidden_layers * tied.layer_param_count()
    # GPT-3 (GPT-2 keys): a learned position table, LayerNorms with biases.
    tables = (tied.vocab_size + tied.position_embeddings) * tied.hidden_size
    assert tied.param_count() == layers + tables + 2 * tied.hidden_size


def test_moe_counts_every_expert() -> None:
    """Mixtral's parameters count all 8 experts' FFNs plus the routers."""
    spec = hwsim.load_model_spec("mixtral-8x7b")
    dense = spec.model_copy(update={"num_local_experts": 0, "num_experts_per_tok": 0})
    d, ff = spec.hidden_size, spec.ffn_size
    per_layer_extra = 7 * 3 * d * ff + 8 * d
    assert spec.param_count() - dense.param_count() == spec.num_hidden_layers * per_layer_extra


def test_real_hf_config_loads_unchanged(tmp_path: Path) -> None:
    """A verbatim HF config.json (with _name_or_path, rope_scaling: null...) loads as the shipped spec."""
    path = _write_config(tmp_path, LLAMA2_7B_HF, folder="Llama-2-7b-hf")
    spec = hwsim.load_model_spec(path)
    shipped = hwsim.load_model_spec("llama2-7b")
    assert spec.name == "Llama-2-7b-hf"
    assert spec.model_copy(update={"name": "llama2-7b"}) == shipped
    assert spec.param_count() == shipped.param_count()


def test_real_hf_config_lowers_like_shipped(tmp_path: Path) -> None:
    """load_workload on an HF config.json path gives the same operators as the shipped name."""
    path = _write_config(tmp_path, LLAMA2_7B_HF, folder="Llama-2-7b-hf")
    from_path = hwsim.load_workload(path, phase="decode", batch=2, context_len=64, n_layers=2)
    from_name = hwsim.load_workload("llama2-7b", phase="decode", batch=2, context_len=64, n_layers=2)
    assert from_path.flops == from_name.flops
    assert from_path.n_ops == from_name.n_ops
    assert from_path.resident_bytes == from_name.resident_bytes
    assert from_path.name == "Llama-2-7b-hf"


def test_gpt2_style_keys_load(tmp_path: Path) -> None:
    """GPT-2 key names (n_layer, n_embd, n_head, activation_function) map onto the spec."""
    path = _write_config(tmp_path, GPT2_HF, folder="gpt2")
    spec = hwsim.load_model_spec(path)
    assert (spec.num_hidden_layers, spec.hidden_size, spec.num_attention_heads) == (12, 768, 12)
    assert spec.ffn_size == 4 * 768  # n_inner absent: 4 x n_embd
    assert not spec.is_gated and spec.norm == "layernorm" and not spec.encoder_only
    w = hwsim.load_workload(path, phase="decode", context_len=16)
    # Decoder layers include the KV-cache write; the embedding adds its position table.
    assert w.n_ops == 12 * 11 + 3 + 2


def test_real_gpt2_config_has_published_param_count(tmp_path: Path) -> None:
    """The verbatim GPT-2 config.json (tied head, key absent) has GPT-2's 124 M parameters."""
    spec = hwsim.load_model_spec(_write_config(tmp_path, GPT2_HF, folder="gpt2"))
    # 124,439,808 parameters in transformers' GPT2LMHeadModel (positions and biases included).
    assert spec.param_count() == 124_439_808


def test_yaml_path_loads(tmp_path: Path) -> None:
    """A YAML spec file path loads and is named after its file stem."""
    path = tmp_path / "tiny-llama.yaml"
    path.write_text("\n".join(f"{k}: {v}" for k, v in TINY.items()), encoding="utf-8")
    spec = hwsim.load_model_spec(path)
    assert spec.name == "tiny-llama"
    assert spec.num_hidden_layers == 2 and spec.is_gated


# ---------------------------------------------------------------------------------------
# Invalid specs

# case -> (fields changed, field the error must name)
INVALID_SPECS = {
    "zero_heads": ({"num_attention_heads": 0}, "num_attention_heads"),
    "heads_not_dividing_hidden": ({"num_attention_heads": 5}, "num_attention_heads"),
    "kv_heads_not_dividing_heads": ({"num_key_value_heads": 3}, "num_key_value_heads"),
    "negative_layers": ({"num_hidden_layers": -1}, "num_hidden_layers"),
    "zero_vocab": ({"vocab_size": 0}, "vocab_size"),
    "topk_above_experts": ({"num_local_experts": 4, "num_experts_per_tok": 5}, "num_experts_per_tok"),
    "moe_without_topk": ({"num_local_experts": 4}, "num_experts_per_tok"),
    "layers_not_a_number": ({"num_hidden_layers": "many"}, "num_hidden_layers"),
}


@pytest.mark.parametrize("case", sorted(INVALID_SPECS))
def test_invalid_spec_names_file_and_field(tmp_path: Path, case: str) -> None:
    """An invalid config.json raises ConfigError whose line names the file and the field."""
    changes, field = INVALID_SPECS[case]
    path = _write_config(tmp_path, {**TINY, **changes})
    with pytest.raises(ConfigError) as info:
        hwsim.load_model_spec(path)
    lines = info.value.problems
    assert any(line.startswith(f"{path}: ") and field in line for line in lines), lines


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    """A config without hidden_size raises ConfigError naming hidden_size."""
    data = {k: v for k, v in TINY.items() if k != "hidden_size"}
    path = _write_config(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        hwsim.load_model_spec(path)
    assert any(str(path) in line and "hidden_size" in line for line in info.value.problems)


def test_gpt2_style_invalid_field_is_named(tmp_path: Path) -> None:
    """A bad GPT-2 style key (n_layer: -1) is reported under the key the file uses."""
    path = _write_config(tmp_path, {**GPT2_HF, "n_layer": -1}, folder="gpt2")
    with pytest.raises(ConfigError) as info:
        hwsim.load_model_spec(path)
    assert any(line.startswith(f"{path}: n_layer") for line in info.value.problems)


def test_non_mapping_config_rejected(tmp_path: Path) -> None:
    """A config.json that is not a mapping raises ConfigError naming the file."""
    path = tmp_path / "config.json"
    path.write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        hwsim.load_model_spec(path)
    assert str(path) in str(info.value)


def test_spec_from_dict_reports_source() -> None:
    """spec_from_dict names the given source in its error lines."""
    with pytest.raises(ConfigError) as info:
        spec_from_dict({**TINY, "num_attention_heads": 0}, source="inline")
    assert info.value.problems[0].startswith("inline: num_attention_heads")


def test_unknown_model_suggests_close_names() -> None:
    """An unknown model name raises ConfigError suggesting close shipped names."""
    with pytest.raises(ConfigError) as info:
        hwsim.load_model_spec("llama2-7bb")
    text = str(info.value)
    assert "did you mean" in text and "llama2-7b" in text
