"""The model zoo: every shipped config and every zoo config is modelled within 1 % on
parameters and 3 % on decode FLOPs per token, or refused by name.

Reference counts come from ``zoo/reference_params.csv``, written by
``zoo/make_reference.py`` from the models transformers instantiates (meta device), so
the tests need neither torch nor the network. Published counts (model cards) are
checked for the shipped presets too.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload import lower
from hwsim.workload.layers import SsmSpec
from hwsim.workload.spec import ModelSpec

ZOO = Path(__file__).resolve().parent / "zoo"
ROWS = {r["name"]: r for r in csv.DictReader((ZOO / "reference_params.csv").open(encoding="utf-8"))}

#: Refused by name until modelled: the words the error must hold (none at present; the
#: encoder-decoders' FLOPs are checked in test_encdec.py).
REFUSED: dict[str, str] = {}

#: Decode context of the FLOPs check (tokens in the cache).
CONTEXT = 4096


def _load(name: str) -> ModelSpec:
    row = ROWS[name]
    return hwsim.load_model_spec(ZOO / "configs" / f"{name}.json" if row["where"] == "zoo" else name)


def test_zoo_covers_every_shipped_model() -> None:
    """The reference table has a row for every shipped model and at least 50 in all."""
    assert set(hwsim.list_models()) <= set(ROWS)
    assert len(ROWS) >= 50


@pytest.mark.parametrize("name", sorted(ROWS))
def test_parameters_match_the_instantiated_model(name: str) -> None:
    """hwsim's parameter count is within 1 % of transformers' instantiated model (or refused by name)."""
    if name in REFUSED:
        with pytest.raises(ConfigError, match=REFUSED[name].replace("(", r"\(").replace(")", r"\)")):
            _load(name)
        return
    spec = _load(name)
    assert spec.param_count() == pytest.approx(int(ROWS[name]["params"]), rel=0.01)


def _attention_flops_per_token(spec: ModelSpec, context: int) -> float:
    """QK^T and PV of one new token over ``context + 1`` keys (capped by windows and chunks):
    2 FLOP per MAC, MLA over its latent (absorbed)."""
    total = 0.0
    for layer in spec.layers():
        a = layer.attention
        if a is None:
            total += _scan_flops_per_token(layer.mixer)
            continue
        keys = context + 1
        if a.kind == "sliding":
            keys = min(keys, a.window or keys)
        elif a.kind == "chunked":
            keys = context % (a.window or keys) + 1
        width = a.mla.latent_width + a.mla.kv_lora_rank if a.mla else 2 * a.head_dim
        total += 2.0 * a.n_heads * keys * width
    return total


def _scan_flops_per_token(mixer: object) -> float:
    """A state-space layer's recurrence for one token: per channel and state, Mamba's
    discretisation, update and read-out (7 operations), Mamba-2's update and read-out
    (5; its scalar A per head is discretised once per head)."""
    assert isinstance(mixer, SsmSpec)
    return mixer.d_inner * mixer.d_state * (7 if mixer.kind == "mamba" else 5)


DECODERS = sorted(n for n in ROWS if n not in REFUSED and not _load(n).encoder_only
                  and not _load(n).is_encoder_decoder)
ENCODERS = sorted(n for n in ROWS if n not in REFUSED and _load(n).encoder_only)


@pytest.mark.parametrize("name", DECODERS)
def test_decode_flops_per_token_are_twice_the_active_parameters_plus_attention(name: str) -> None:
    """A batch-1 decode step at a 4096-token context costs 2 x active parameters (the
    instantiated model's, top-k experts only, LM head once) plus attention, within 3 %."""
    spec = _load(name)
    w = lower(spec, "decode", batch=1, context_len=CONTEXT)
    expected = 2.0 * float(ROWS[name]["active_params"]) + _attention_flops_per_token(spec, CONTEXT)
    assert w.flops == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_flops_per_token_are_twice_the_layer_parameters_plus_attention(name: str) -> None:
    """An encoder's prefill costs 2 x its layers' parameters per token (each shared ALBERT
    layer as often as it runs) plus bidirectional attention, within 3 %."""
    spec = _load(name)
    seq = 512
    w = lower(spec, "prefill", batch=1, prompt_len=seq)
    layer = spec.layer_param_count()  # ALBERT: the one shared layer
    projection = 2 * spec.embedding_width * spec.hidden_size if spec.embedding_size else 0
    attention = spec.num_hidden_layers * 4.0 * spec.num_attention_heads * seq * spec.d_head
    expected = 2.0 * spec.num_hidden_layers * layer + projection + attention
    assert w.flops / seq == pytest.approx(expected, rel=0.03)
    # The layer count itself is the instantiated model's, less its embeddings and heads.
    outside = spec.embedding_param_count() + spec.head_param_count()
    assert int(ROWS[name]["params"]) - outside == pytest.approx(
        layer * (1 if spec.shared_layer_groups else spec.num_hidden_layers), rel=0.01)


# Published totals (and active counts where the card gives one), billions, with the
# tolerance their rounding allows. Sources: each model's Hugging Face model card or paper.
# Cards differ on whether the input embedding is "active": those marked in
# EMBEDDING_ACTIVE count it, gpt-oss does not.
EMBEDDING_ACTIVE = {"mixtral-8x22b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3", "phi3.5-moe",
                    "llama4-scout"}
PUBLISHED = {
    "llama3.1-8b": (8.03, None, 0.005),        # meta-llama/Llama-3.1-8B card: 8.03B
    "llama3.1-70b": (70.6, None, 0.005),       # card: 70.6B
    "llama3.1-405b": (405.9, None, 0.005),     # card: 405B; safetensors 405.9B
    "llama4-scout": (109.0, 17.0, 0.02),       # card: 109B total, 17B active (vision 1.2B included)
    "mistral-7b": (7.24, None, 0.005),         # Mistral-7B-v0.1 card: 7.24B
    "mixtral-8x22b": (141.0, 39.0, 0.01),      # Mistral AI: 141B total, 39B active
    "qwen2.5-7b": (7.61, None, 0.005),         # Qwen2.5-7B card: 7.61B
    "qwen2.5-72b": (72.7, None, 0.005),        # card: 72.7B
    "qwen3-32b": (32.8, None, 0.005),          # Qwen3-32B card: 32.8B
    "qwen3-30b-a3b": (30.5, 3.3, 0.01),        # card: 30.5B total, 3.3B activated (embeddings included)
    "qwen3-235b-a22b": (235.0, 22.0, 0.01),    # card: 235B total, 22B activated
    "deepseek-v3": (671.0, 37.0, 0.01),        # DeepSeek-V3 report: 671B total, 37B activated (MTP apart)
    "gemma2-9b": (9.24, None, 0.005),          # gemma-2-9b: 9.24B (safetensors)
    "gemma2-27b": (27.2, None, 0.005),         # gemma-2-27b: 27.2B
    "gemma3-27b": (27.4, None, 0.02),          # Gemma 3 report: 27.4B with the 0.4B vision encoder
    "phi3-mini": (3.8, None, 0.01),            # Phi-3 report: 3.8B
    "phi3.5-moe": (41.9, 6.6, 0.01),           # Phi-3.5-MoE card: 42B total (41.9B), 6.6B active
    "gpt-oss-20b": (20.9, 3.61, 0.01),         # gpt-oss model card: 20.91B total, 3.61B active
    "gpt-oss-120b": (116.8, 5.13, 0.01),       # gpt-oss model card: 116.83B total, 5.13B active
    "gpt-j-6b": (6.05, None, 0.005),           # EleutherAI/gpt-j-6b card: 6,053,381,344
    "gpt-neox-20b": (20.55, None, 0.005),      # GPT-NeoX-20B paper: 20,554,567,680
    "falcon-7b": (6.92, None, 0.01),           # falcon-7b safetensors: 6.92B
    "falcon-40b": (41.3, None, 0.01),          # falcon-40b safetensors: 41.3B
    "opt-6.7b": (6.7, None, 0.01),             # OPT paper, Table 1: 6.7B
    "bloom-7b1": (7.07, None, 0.005),          # bloom-7b1 card: 7,069,016,064
    "bloom-176b": (176.2, None, 0.005),        # bloom card: 176,247,271,424
    "bert-base": (0.110, None, 0.01),          # BERT paper: 110M
    "roberta-large": (0.355, None, 0.01),      # RoBERTa/fairseq: 355M
    "mamba-2.8b": (2.77, None, 0.005),         # state-spaces/mamba-2.8b-hf (safetensors): 2.77B
    "jamba-v0.1": (51.6, 12.0, 0.01),          # ai21labs/Jamba-v0.1 card: 52B total (51.6B), 12B active
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_match_published_counts(name: str) -> None:
    """Each shipped preset's total (and active) parameters agree with the published figure."""
    total, active, rel = PUBLISHED[name]
    spec = hwsim.load_model_spec(name)
    vision = float(ROWS[name]["vision_params"]) if name in ROWS else 0.0
    assert (spec.param_count() + vision) / 1e9 == pytest.approx(total, rel=rel)
    if active is not None:
        untied = not spec.tie_word_embeddings and name in EMBEDDING_ACTIVE
        counted = spec.active_param_count() + (spec.vocab_size * spec.hidden_size if untied else 0)
        assert counted / 1e9 == pytest.approx(active, rel=0.03)
