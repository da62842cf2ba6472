"""Encoder-decoder models (T5, Flan-T5, BART): parameters, the encoder pass, the decoder's
self- and cross-attention with the source's keys and values cached, and what is refused
by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload import lower
from hwsim.workload.ops import Attention
from hwsim.workload.spec import ModelSpec, spec_from_dict

CONFIGS = Path(__file__).resolve().parent / "zoo" / "configs"


def _zoo(name: str) -> ModelSpec:
    return hwsim.load_model_spec(CONFIGS / f"{name}.json")


def _config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))


# Published sizes, millions, with the tolerance of their rounding: T5 paper (Raffel et
# al. 2020, section 3.7): Small 60M; BART paper (Lewis et al. 2020, section 3): base
# ~140M, large ~400M; Flan-T5 (Chung et al. 2022, Table 2): Small 80M, Base 250M, Large
# 780M. (The T5 paper's "770M" for Large counts an untied head: the tied checkpoint
# has 738M, so it is not used.)
PUBLISHED = {"t5-small": (60, 0.02), "bart-base": (140, 0.01), "bart-large": (400, 0.02),
             "flan-t5-small": (80, 0.05), "flan-t5-base": (250, 0.02), "flan-t5-large": (780, 0.01)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameters_match_published_sizes(name: str) -> None:
    """T5, Flan-T5 and BART totals agree with the published sizes."""
    total, rel = PUBLISHED[name]
    assert _zoo(name).param_count() / 1e6 == pytest.approx(total, rel=rel)


def test_t5_base_matches_the_instantiated_model() -> None:
    """t5-base equals transformers' T5ForConditionalGeneration (zoo/reference_params.csv)."""
    assert hwsim.load_model_spec("t5-base").param_count() == 222_903_552


def test_bart_base_in_closed_form() -> None:
    """bart-base by BartForConditionalGeneration's modules: a shared 50265 x 768 table, two
    1026-row position tables and embedding LayerNorms, 6 encoder layers (attention with
    biases, two LayerNorms, 768-3072-768 FFN with biases), 6 decoder layers (plus
    cross-attention and its LayerNorm), the head tied: 139,420,416."""
    d, f = 768, 3072
    attn, ln, ffn = 4 * (d * d + d), 2 * d, d * f + f + f * d + d
    enc, dec = attn + 2 * ln + ffn, 2 * attn + 3 * ln + ffn
    expected = 50265 * d + 2 * 1026 * d + 2 * ln + 6 * enc + 6 * dec
    assert _zoo("bart-base").param_count() == expected == 139_420_416


def test_flan_t5_is_gated_and_untied() -> None:
    """Flan-T5's gated-gelu FFN has two input projections; its LM head is its own."""
    spec = _zoo("flan-t5-base")
    assert spec.layer(0).ffn.gated and not spec.tie_word_embeddings
    assert spec.layer(0).mixer.rel_bias_buckets == 32 and spec.layer(1).mixer.rel_bias_buckets == 0
    decoder = spec.layer(12)
    assert decoder.cross is not None and decoder.mixer.is_causal and not decoder.cross.is_causal
    assert not spec.layer(0).mixer.is_causal and spec.layer(0).cross is None


def _attentions(w: hwsim.Workload, variant: str) -> list[Attention]:
    return [op for p in w.passes for seg in p.segments for _, op in seg.graph.ops()
            if isinstance(op, Attention) and op.variant == variant]


def test_decode_cost_grows_with_the_source_through_cross_attention() -> None:
    """A decode step's FLOPs grow by 4 x heads x head_dim per source token and decoder
    layer (QK^T and PV of the cross-attention), and nothing else changes; it neither
    runs the encoder nor projects the source again, and takes longer on a chip."""
    spec = hwsim.load_model_spec("t5-base")
    short = lower(spec, "decode", batch=4, prompt_len=128, context_len=32)
    long = lower(spec, "decode", batch=4, prompt_len=4096, context_len=32)
    assert long.flops - short.flops == pytest.approx(4 * 4 * 12 * 64 * (4096 - 128) * 12, rel=1e-12)
    names = {n for p in long.passes for seg in p.segments for n, _ in seg.graph.ops()}
    assert "cross_attention" in names and "cross_kv_proj" not in names
    assert all(op.kv_len == 4096 and not op.is_causal for op in _attentions(long, "cross"))
    chip = hwsim.load_arch("h100-sxm")
    assert hwsim.simulate(long, chip).latency_s > hwsim.simulate(short, chip).latency_s


def test_decode_flops_per_token() -> None:
    """A batch-1 decode step costs 2 x (decoder layers' parameters + LM head) plus its
    self- and cross-attention, within 3 %, less the cross-attention K/V projections,
    which ran once, in the prefill."""
    spec = _zoo("flan-t5-base")
    src, ctx = 512, 64
    w = lower(spec, "decode", batch=1, prompt_len=src, context_len=ctx)
    decoder = sum(spec.layer_param_count(i) for i in range(12, 24)) - 12 * 2 * 768 * 768
    attention = 12 * 4 * 12 * 64 * ((ctx + 1) + src)
    assert w.flops == pytest.approx(2 * (decoder + 32128 * 768) + attention, rel=0.03)


def test_prefill_runs_the_encoder_and_projects_the_source_once() -> None:
    """Prefill: the encoder over the source (bidirectional), then one decoder step that
    projects the encoder output to each decoder layer's cross keys and values."""
    spec = hwsim.load_model_spec("t5-base")
    src = 256
    w = lower(spec, "prefill", batch=2, prompt_len=src)
    encoder = [op for op in _attentions(w, "") if op.q_len == src]
    assert encoder and all(not op.is_causal and op.kv_len == src for op in encoder)
    roles = [seg.name for seg in w.passes[0].segments]
    assert roles[0] == "encoder_embed" and "decoder_embed" in roles and roles[-1] == "head"
    stacks = ("encoder_layers", "decoder_layers")
    n_layers = sum(seg.repeat * seg.layers for seg in w.passes[0].segments if seg.name.startswith(stacks))
    assert n_layers == 24
    per_layer = 2 * 2 * src * 768 * 2 * 768  # 2 sequences x src tokens, d -> K and V
    kv = sum(seg.repeat * sum(op.flops for n, op in seg.graph.ops() if n.endswith("cross_kv_proj"))
             for seg in w.passes[0].segments)
    assert kv == 12 * per_layer


def test_cache_holds_decoder_tokens_and_the_source() -> None:
    """The cache: per decoder layer K and V of the decoder's tokens and of the source."""
    spec = hwsim.load_model_spec("t5-base")
    w = lower(spec, "decode", batch=3, prompt_len=500, context_len=99)
    assert w.resident_bytes["kv_cache_bytes"] == 3 * 12 * (100 + 500) * 2 * 768 * 2


def test_request_has_ttft_and_folded_equals_unfolded() -> None:
    """A request: the prefill's time is the TTFT; folding repeated layers changes nothing."""
    w = lower(hwsim.load_model_spec("t5-base"), "request", batch=2, prompt_len=128, new_tokens=3)
    assert [p.name for p in w.passes] == ["prefill", "decode0", "decode1", "decode2"]
    chip = hwsim.load_arch("h100-sxm")
    folded, flat = hwsim.simulate(w, chip), hwsim.simulate(w, chip, fold=False)
    assert folded.latency_s == pytest.approx(flat.latency_s, rel=1e-9)
    assert folded.ttft_s == pytest.approx(hwsim.simulate(lower(w.spec, "prefill", batch=2, prompt_len=128),
                                                         chip).latency_s, rel=1e-9)


def test_n_layers_slices_each_stack() -> None:
    """n_layers keeps that many layers in the encoder and in the decoder."""
    w = lower(hwsim.load_model_spec("t5-base"), "prefill", batch=1, prompt_len=64, n_layers=2)
    n = {seg.name: seg.repeat * seg.layers for seg in w.passes[0].segments if "layers" in seg.name}
    assert sum(v for k, v in n.items() if k.startswith("encoder")) == 2
    assert sum(v for k, v in n.items() if k.startswith("decoder")) == 2


def test_what_is_not_modelled_is_refused_by_name() -> None:
    """Training, parallel plans and serving of encoder-decoders, other encoder-decoder
    families, and inconsistent configs are refused with their names."""
    spec = hwsim.load_model_spec("t5-base")
    with pytest.raises(ConfigError, match=r"training of encoder-decoder models \(T5\)"):
        lower(spec, "train")
    with pytest.raises(ConfigError, match="parallel plans for encoder-decoder"):
        lower(spec, "decode", plan=hwsim.Plan(tp=2))
    with pytest.raises(ConfigError, match="serving encoder-decoder models"):
        hwsim.serve(hwsim.Requests.offline(2, 64, 4), "h100-sxm", model="t5-base")
    with pytest.raises(ConfigError, match=r"encoder-decoder \(Whisper\) is not modelled yet"):
        spec_from_dict({"model_type": "whisper", "d_model": 512}, "cfg.json")
    bad = _config("bart-base") | {"decoder_attention_heads": 16}
    with pytest.raises(ConfigError, match="decoder_attention_heads: 16 differs from the encoder's 12"):
        spec_from_dict(bad, "cfg.json")
    with pytest.raises(ConfigError, match="feed_forward_proj: expected"):
        spec_from_dict(_config("flan-t5-base") | {"feed_forward_proj": "gated-swoosh"}, "cfg.json")
