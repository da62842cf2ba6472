"""Model structures beyond the plain decoder: sliding windows, chunked and latent
attention, mixtures of experts in every spelling, parallel blocks, biases, embeddings,
nested configs, strict numbers and what lowering says it simplified."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import hwsim
from hwsim.dtypes import dtype_bytes
from hwsim.errors import ConfigError
from hwsim.workload import Attention, MatMul, SegmentRole, lower, spec_from_dict
from hwsim.workload.blocks import attention_ops
from hwsim.workload.layers import kv_bytes_per_token, layer_weight_params, norm_params
from hwsim.workload.memory import (
    kv_cache_bytes_per_token,
    memory_per_chip,
    sequence_kv_bytes,
    weight_bytes_per_chip,
)
from hwsim.workload.ops import Collective
from hwsim.workload.parallel import layer_graph, sharded_layer
from hwsim.workload.plan import Plan

ZOO = Path(__file__).resolve().parent / "zoo" / "configs"


def _zoo(name: str) -> dict[str, Any]:
    return dict(json.loads((ZOO / f"{name}.json").read_text(encoding="utf-8")))


def _ops(w: hwsim.Workload, kind: type, pass_index: int = 0) -> list[tuple[Any, int]]:
    segments = w.passes[pass_index].segments
    return [(op, s.repeat) for s in segments for _, op in s.graph.ops() if isinstance(op, kind)]


# ---------------------------------------------------------------------------------------
# Attention structure


def test_mistral_sliding_window_caps_attention_and_cache() -> None:
    """Mistral-7B's 4096-token window: at an 8192-token context each new token reads 4096 keys
    per layer, and the cache holds 4096 tokens per layer, not 8193."""
    spec = hwsim.load_model_spec("mistral-7b")
    w = lower(spec, "decode", batch=1, context_len=8192)
    attn = [op for op, _ in _ops(w, Attention)]
    assert attn and all(op.window == 4096 and op.kv_keys == 4096 for op in attn)
    assert attn[0].n_scores == 4096
    per_token = 2 * 8 * 128 * 2  # K and V of 8 heads of 128, bf16
    assert w.resident_bytes["kv_cache_bytes"] == 32 * 4096 * per_token


def test_gemma2_alternates_local_and_global_layers_in_one_period() -> None:
    """Gemma-2's even layers are sliding (4096), odd ones global: one segment of a two-layer
    period, repeated 21 times; the global layers' keys grow with the context."""
    spec = hwsim.load_model_spec("gemma2-9b")
    assert [spec.layer(i).mixer.kind for i in range(4)] == ["sliding", "full", "sliding", "full"]
    w = lower(spec, "decode", batch=1, context_len=8191)
    (layers,) = [s for s in w.passes[0].segments if s.role is SegmentRole.LAYER]
    assert (layers.repeat, layers.layers) == (21, 2)
    keys = sorted(op.kv_keys for _, op in layers.graph.ops() if isinstance(op, Attention))
    assert keys == [4096, 8192]
    softcap = [op for _, op in layers.graph.ops() if isinstance(op, Attention)]
    assert all(op.softcap for op in softcap)


def test_gpt_oss_layer_types_and_sinks() -> None:
    """gpt-oss reads layer_types (sliding 128 / full alternating) and says it ignores sinks."""
    spec = hwsim.load_model_spec("gpt-oss-20b")
    assert spec.layer(0).mixer.window == 128 and spec.layer(1).mixer.window is None
    w = lower(spec, "decode", context_len=1024)
    assert any("attention sinks" in line for line in w.warnings)


def test_llama4_chunked_attention_every_fourth_layer_global() -> None:
    """Llama-4 Scout (text_config): 8192-token chunks on three layers of four, the fourth
    global; a token at position 10000 sees 10000 % 8192 + 1 keys in a chunked layer."""
    spec = hwsim.load_model_spec("llama4-scout")
    kinds = [spec.layer(i).mixer.kind for i in range(8)]
    assert kinds == ["chunked", "chunked", "chunked", "full"] * 2
    layer = spec.layer(0)
    (_, op), = attention_ops(layer, Plan(), 1, 1, 10001, "bf16")
    assert isinstance(op, Attention) and op.n_scores == 10000 % 8192 + 1
    w = lower(spec, "decode", context_len=1024)
    assert any("vision tower" in line for line in w.warnings)


def test_window_and_chunk_scores_closed_forms() -> None:
    """n_scores of a causal prefill with a window W: sum of min(i + 1, W); with chunks C:
    sum of (i mod C) + 1."""
    n, window, chunk = 1000, 300, 256
    sliding = Attention(1, 1, 1, n, n, 64, window=window)
    chunked = Attention(1, 1, 1, n, n, 64, chunk=chunk)
    assert sliding.n_scores == sum(min(i + 1, window) for i in range(n))
    assert chunked.n_scores == sum(i % chunk + 1 for i in range(n))
    assert Attention(1, 1, 1, n, n, 64, window=n).n_scores == Attention(1, 1, 1, n, n, 64).n_scores


def test_windowed_attention_costs_what_its_window_costs() -> None:
    """A decode attention with a 4096 window over 65536 cached keys takes about as long as a
    plain one over 4096 keys (it reads only those), and far less than over 65536."""
    from hwsim.cost.attention import attention_cost

    chip = hwsim.load_arch("h100-sxm")
    windowed = attention_cost(chip, Attention(8, 32, 8, 1, 65536, 128, window=4096)).latency_s
    short = attention_cost(chip, Attention(8, 32, 8, 1, 4096, 128)).latency_s
    long = attention_cost(chip, Attention(8, 32, 8, 1, 65536, 128)).latency_s
    assert windowed == pytest.approx(short, rel=0.01)
    assert windowed < long / 4


# ---------------------------------------------------------------------------------------
# Multi-head latent attention


def test_deepseek_mla_caches_the_compressed_latent() -> None:
    """DeepSeek-V3 caches kv_lora_rank + qk_rope_head_dim = 576 elements per token and layer
    (not 2 x 128 heads x 192), replicated over tensor-parallel chips."""
    spec = hwsim.load_model_spec("deepseek-v3")
    layer = spec.layer(0)
    assert kv_bytes_per_token(layer, 1, 1.0) == 576
    assert kv_bytes_per_token(layer, 8, 1.0) == 576
    assert kv_cache_bytes_per_token(spec, Plan(), "bf16") == 61 * 576 * 2
    assert sequence_kv_bytes(spec, Plan(tp=8), 1000, "bf16") == 61 * 576 * 2 * 1000


def test_mla_absorbed_for_decode_expanded_for_prefill() -> None:
    """Decode attends over the latent (absorbed: one 576-wide 'KV head', values the first
    512 columns); prefill up-projects keys and values (expanded: 192-wide keys, 128-wide
    values); both choices are in the warnings and the op detail."""
    spec = hwsim.load_model_spec("deepseek-v3")
    decode = lower(spec, "decode", context_len=4096, n_layers=4)
    prefill = lower(spec, "prefill", prompt_len=4096, n_layers=4)
    (d_op, _), *_ = _ops(decode, Attention)
    (p_op, _), *_ = _ops(prefill, Attention)
    assert (d_op.n_kv_heads, d_op.head_dim, d_op.v_dim, d_op.latent_kv) == (1, 576, 512, True)
    assert (p_op.n_kv_heads, p_op.head_dim, p_op.v_dim, p_op.latent_kv) == (128, 192, 128, False)
    assert any("absorbed form for decode" in line for line in decode.warnings)
    assert any("expanded form for prefill" in line for line in prefill.warnings)
    from hwsim.cost.attention import attention_cost

    assert "mla absorbed" in attention_cost(hwsim.load_arch("h100-sxm"), d_op).detail


def test_mla_forms_agree_on_the_arithmetic_they_share() -> None:
    """Both MLA forms of a decode step read the same up-projection weights: the absorbed
    q/v absorption GEMMs hold exactly the expanded kv_up's weights."""
    layer = hwsim.load_model_spec("deepseek-v3").layer(0)
    absorbed = attention_ops(layer, Plan(), 1, 1, 100, "bf16", form="absorbed")
    expanded = attention_ops(layer, Plan(), 1, 1, 100, "bf16", form="expanded")
    weights = [sum(op.b_bytes for _, op in ops if isinstance(op, MatMul)) for ops in (absorbed, expanded)]
    assert weights[0] == weights[1]


# ---------------------------------------------------------------------------------------
# Mixture of experts


def test_qwen3_moe_experts_use_moe_intermediate_size() -> None:
    """Qwen3-30B-A3B's 128 experts are 768 wide (moe_intermediate_size), not 6144."""
    spec = hwsim.load_model_spec("qwen3-30b-a3b")
    assert spec.layer(0).ffn.width == 768 and spec.layer(0).ffn.n_experts == 128
    w = lower(spec, "decode", batch=1, context_len=128, n_layers=1)
    ups = [op for op, _ in _ops(w, MatMul) if op.batch == 8]
    assert ups and {op.n for op in ups} >= {2 * 768}


def test_deepseek_dense_first_layers_are_their_own_segment() -> None:
    """first_k_dense_replace = 3: three dense layers, then 58 MoE layers (two segments)."""
    w = lower(hwsim.load_model_spec("deepseek-v3"), "decode", context_len=128)
    layers = [(s.name, s.repeat) for s in w.passes[0].segments if s.role is SegmentRole.LAYER]
    assert layers == [("layers0-2", 3), ("layers3-60", 58)]


def test_qwen2_moe_shared_expert_and_its_gate() -> None:
    """Qwen2-57B-A14B: 64 experts of 2560 plus a gated 20480-wide shared expert per layer."""
    spec = spec_from_dict(_zoo("qwen2-57b-a14b"), "qwen2-57b-a14b")
    f = spec.layer(0).ffn
    assert (f.n_experts, f.top_k, f.width, f.shared_width, f.shared_gate) == (64, 8, 2560, 20480, True)
    g = sharded_layer(spec.layer(0), Plan(), 1, 1, 10, "bf16")
    assert {"shared_up_proj", "shared_gate", "shared_add"} <= set(g.nodes)


def test_capacity_factor_scales_expert_gemms_and_all_to_all() -> None:
    """A capacity factor of 2 doubles the expert GEMM rows and the all-to-all bytes."""
    spec = hwsim.load_model_spec("mixtral-8x7b")
    plan = Plan(dp=4, ep=4)

    def parts(factor: float) -> tuple[int, float]:
        w = lower(spec, "prefill", batch=4, prompt_len=256, n_layers=1, plan=plan, moe_capacity_factor=factor)
        seg = next(s for s in w.passes[0].segments if s.role is SegmentRole.LAYER)
        ops = dict(seg.graph.ops())
        dispatch = ops["moe_dispatch"]
        assert isinstance(dispatch, Collective)
        return ops["expert_up_proj"].m, dispatch.n_bytes  # type: ignore[union-attr]

    (m1, b1), (m2, b2) = parts(1.0), parts(2.0)
    assert m2 == pytest.approx(2 * m1, abs=1) and b2 == 2 * b1
    with pytest.raises(ConfigError, match="moe_capacity_factor"):
        lower(spec, "decode", moe_capacity_factor=0.5)


@pytest.mark.parametrize("key", ["num_local_experts", "num_experts", "n_routed_experts"])
def test_every_expert_count_spelling(key: str) -> None:
    """The three spellings of the expert count give the same model."""
    base = {"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_hidden_layers": 2, "vocab_size": 100, "num_experts_per_tok": 2, key: 8}
    assert spec_from_dict(base).num_local_experts == 8


# ---------------------------------------------------------------------------------------
# Falcon, parallel blocks, gating, biases, embeddings


def test_falcon_multi_query_and_legacy_keys() -> None:
    """Falcon-7B (current and RefinedWebModel keys) has one KV head; Falcon-40B's
    RefinedWeb keys (n_head_kv) give 8 and two norms in its parallel block."""
    new = hwsim.load_model_spec("falcon-7b")
    legacy = spec_from_dict(_zoo("falcon-7b-legacy"), "falcon-7b-legacy")
    assert new.n_kv_heads == legacy.n_kv_heads == 1
    assert new.param_count() == legacy.param_count()
    big = spec_from_dict(_zoo("falcon-40b-legacy"), "falcon-40b-legacy")
    assert big.n_kv_heads == 8 and big.layer(0).n_norms == 2 and big.layer(0).parallel


def test_parallel_block_reduces_once_under_tensor_parallelism() -> None:
    """GPT-J's attention and FFN read one LayerNorm output and are summed before a single
    all-reduce (sequential layers need two)."""
    spec = hwsim.load_model_spec("gpt-j-6b")
    w = lower(spec, "decode", batch=4, context_len=128, plan=Plan(tp=4))
    seg = next(s for s in w.passes[0].segments if s.role is SegmentRole.LAYER)
    reduces = [n for n, op in seg.graph.ops() if isinstance(op, Collective)]
    assert reduces == ["block_allreduce"]
    assert set(seg.graph.predecessors("branch_sum")) == {"o_proj", "down_proj"}
    assert set(seg.graph.predecessors("qkv_proj")) == set(seg.graph.predecessors("up_proj")) == {"attn_norm"}


def test_gemma_geglu_is_gated_whatever_its_activation_name() -> None:
    """Gemma's GELU FFN is gated (GeGLU): three projections, as transformers builds it."""
    spec = spec_from_dict(_zoo("gemma-7b"), "gemma-7b")
    assert spec.hidden_act == "gelu" and spec.is_gated


def test_biases_in_parameters_bytes_and_flops() -> None:
    """Qwen2 biases its q/k/v projection but not o_proj; GPT-J biases its MLP and LM head."""
    qwen = hwsim.load_model_spec("qwen2.5-7b").layer(0).mixer
    assert qwen.qkv_bias and not qwen.o_bias
    spec = hwsim.load_model_spec("gpt-j-6b")
    w = lower(spec, "decode", batch=2, context_len=16, n_layers=1)
    ops = {n: op for s in w.passes[0].segments for n, op in s.graph.ops()}
    lm = ops["lm_head"]
    assert isinstance(lm, MatMul) and lm.bias and not ops["qkv_proj"].bias  # type: ignore[union-attr]
    assert lm.flops == 2 * 2 * 4096 * 50400 + 2 * 50400
    assert lm.b_bytes == (4096 + 1) * 50400 * 2


def test_albert_shares_one_layer_and_factorises_its_embedding() -> None:
    """ALBERT-base stores one layer once (read by all 12) and a 128-wide embedding projected to 768."""
    spec = spec_from_dict(_zoo("albert-base-v2"), "albert-base-v2")
    layers = spec.layers()
    assert not layers[0].shared and all(lyr.shared for lyr in layers[1:])
    assert spec.param_count() == 11_221_680  # AlbertForMaskedLM in transformers
    w = lower(spec, "prefill", prompt_len=64)
    assert sum(s.repeat for s in w.passes[0].segments if s.role is SegmentRole.LAYER) == 12
    emb = next(s for s in w.passes[0].segments if s.role is SegmentRole.EMBED)
    proj = dict(emb.graph.ops())["embedding_proj"]
    assert isinstance(proj, MatMul) and (proj.k, proj.n) == (128, 768)


def test_graph_weights_are_the_counted_parameters() -> None:
    """The weight bytes a dense layer's GEMMs read equal the parameters counted for it, less
    its norms (one source for both)."""
    for name in ("llama3.1-8b", "qwen2.5-7b", "gpt-j-6b", "falcon-40b", "gemma2-9b", "phi3-mini"):
        layer = hwsim.load_model_spec(name).layer(0)
        g = sharded_layer(layer, Plan(), 1, 1, 8, "bf16")
        gemm = sum(op.b_bytes for _, op in g.ops() if isinstance(op, MatMul) and op.b_is_weight)
        counted = (sum(layer_weight_params(layer)) - norm_params(layer)) * 2
        extra = 2 * layer.mixer.head_dim * 2 if layer.mixer.qk_norm else 0
        assert gemm + extra == pytest.approx(counted, rel=1e-9), name


# ---------------------------------------------------------------------------------------
# Interfaces for the serving engine


def test_layer_graph_takes_a_callers_attention() -> None:
    """layer_graph runs its linear ops over n_tokens rows and puts the given attention op
    between the projections (a mixed batch's kernel)."""
    layer = hwsim.load_model_spec("llama3.1-8b").layer(0)
    mixed = Attention(3, 32, 8, 40, 2000, 128)
    g = layer_graph(layer, Plan(), 120, [("attention", mixed)], "bf16")
    ops = dict(g.ops())
    assert ops["attention"] is mixed
    assert ops["qkv_proj"].m == ops["down_proj"].m == 120  # type: ignore[union-attr]


def test_weight_and_kv_bytes_per_chip() -> None:
    """weight_bytes_per_chip splits over tp; kv_cache_bytes_per_token counts the growing layers
    and sequence_kv_bytes caps window layers (Gemma-2: half its layers at 4096)."""
    spec = hwsim.load_model_spec("llama3.1-8b")
    assert weight_bytes_per_chip(spec, Plan(), "bf16") == spec.param_count() * 2
    assert weight_bytes_per_chip(spec, Plan(tp=2), "bf16") < 0.51 * spec.param_count() * 2
    gemma = hwsim.load_model_spec("gemma2-9b")
    per = 2 * 8 * 256 * 2
    assert kv_cache_bytes_per_token(gemma, Plan(), "bf16") == 21 * per
    assert sequence_kv_bytes(gemma, Plan(), 10000, "bf16") == 21 * per * 10000 + 21 * per * 4096
    mem = memory_per_chip(gemma, "decode", Plan(), batch=2, context_len=9999)
    assert mem.kv_cache_bytes == 2 * sequence_kv_bytes(gemma, Plan(), 10000, "bf16")


# ---------------------------------------------------------------------------------------
# Pipelines that do not divide the layers


def test_uneven_pipeline_stages_simulate_the_busiest() -> None:
    """DeepSeek-V3 on pp=8: stages of 8 and 7 layers; stage 1 (eight MoE layers) is the
    one lowered, and the warnings say so."""
    spec = hwsim.load_model_spec("deepseek-v3")
    w = lower(spec, "decode", batch=8, context_len=1024, plan=Plan(pp=8, microbatches=8))
    layers = [(s.name, s.repeat) for s in w.passes[0].segments if s.role is SegmentRole.LAYER]
    assert layers == [("layer", 8)] and w.passes[0].segments[1].graph.has_node("router")
    assert any("pp=8 over 61 layers: stages of 8 and 7 layers; stage 1" in line for line in w.warnings)


def test_uneven_pipeline_simulates_end_to_end() -> None:
    """A 5-layer slice on two pipeline stages runs and takes longer than one stage alone."""
    w = hwsim.load_workload("llama3.1-8b", phase="decode", batch=4, context_len=256, n_layers=5)
    result = hwsim.simulate(w, "dgx-h100", plan=Plan(pp=2, microbatches=2))
    assert math.isfinite(result.latency_s) and result.latency_s > 0


# ---------------------------------------------------------------------------------------
# Strict numbers, near-misses and warnings

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_hidden_layers": 2, "vocab_size": 100, "max_position_embeddings": 256}


@pytest.mark.parametrize(("key", "value"), [("num_hidden_layers", True), ("num_hidden_layers", "32"),
                                            ("num_hidden_layers", 2.0), ("tie_word_embeddings", 1),
                                            ("attention_bias", "yes"), ("sliding_window", float("inf"))])
def test_numbers_and_flags_are_strict(key: str, value: object) -> None:
    """An integer field takes an integer, a flag a boolean: the error names the key."""
    with pytest.raises(ConfigError) as info:
        spec_from_dict({**TINY, key: value}, "cfg")
    assert any(line.startswith(f"cfg: {key}") for line in info.value.problems), info.value.problems


def test_near_miss_keys_get_did_you_mean() -> None:
    """A misspelt required key is named in the error with its likely spelling; a misspelt
    optional one becomes a warning of every workload lowered from the model."""
    bad = {k: v for k, v in TINY.items() if k != "num_hidden_layers"} | {"num_hiden_layers": 2}
    with pytest.raises(ConfigError, match="did you mean 'num_hidden_layers'"):
        spec_from_dict(bad, "cfg")
    spec = spec_from_dict({**TINY, "num_key_value_head": 2}, "cfg")
    assert spec.n_kv_heads == 4
    w = lower(spec, "decode", context_len=8)
    assert any("'num_key_value_head'" in line and "did you mean 'num_key_value_heads'" in line
               for line in w.warnings)


def test_layer_and_context_warnings() -> None:
    """n_layers above the model's layers and a context beyond max_position_embeddings are
    said; a context that rope scaling allows is not."""
    spec = hwsim.load_model_spec("llama2-7b")
    assert any("exceeds the model's 32 layers" in line
               for line in lower(spec, "decode", context_len=8, n_layers=40).warnings)
    assert any("exceeds the 4096" in line for line in lower(spec, "decode", context_len=8192).warnings)
    llama31 = hwsim.load_model_spec("llama3.1-8b")
    assert not lower(llama31, "decode", context_len=100_000).warnings


def test_text_config_nesting_reads_the_text_model() -> None:
    """A multimodal wrapper's text_config is the model: Gemma-3 27B's 62 layers with the
    class defaults a saved config omits (vocabulary 262208, 5:1 local/global)."""
    spec = hwsim.load_model_spec("gemma3-27b")
    assert (spec.num_hidden_layers, spec.vocab_size, spec.sliding_window) == (62, 262208, 1024)
    assert [spec.layer(i).mixer.kind for i in range(6)] == ["sliding"] * 5 + ["full"]
    assert spec.layer(0).n_norms == 4 and spec.layer(0).mixer.qk_norm


def test_workload_warnings_bytes_use_dtype() -> None:
    """The KV cache at fp8 is half the bf16 one (the per-token functions take the dtype)."""
    spec = hwsim.load_model_spec("qwen3-32b")
    assert kv_cache_bytes_per_token(spec, Plan(), "fp8") * 2 == kv_cache_bytes_per_token(spec, Plan(), "bf16")
    assert dtype_bytes("fp8") == 1
