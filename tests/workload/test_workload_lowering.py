"""Lowering model specs to operator graphs: structure, FLOP closed forms per phase, GQA,
gated FFNs, mixture of experts, dtype and layer overrides, requests and training."""

from __future__ import annotations

import networkx as nx
import pytest

import hwsim
from hwsim.dtypes import dtype_bytes
from hwsim.errors import ConfigError
from hwsim.workload import Attention, Elementwise, Embedding, MatMul, Optimizer, SegmentRole, Workload, lower
from hwsim.workload.ops import Op
from hwsim.workload.parallel import experts_touched


def _segment(w: Workload, name: str, pass_index: int = 0) -> dict[str, Op]:
    """Operators of segment ``name`` of pass ``pass_index``, by op name."""
    for seg in w.passes[pass_index].segments:
        if seg.name == name:
            return dict(seg.graph.ops())
    raise KeyError(name)


def _all_ops(w: Workload) -> list[tuple[Op, int]]:
    """Every operator with the number of times it runs."""
    return [(op, s.repeat) for p in w.passes for s in p.segments for _, op in s.graph.ops()]


def _flops_of(w: Workload, kind: type) -> float:
    return sum(op.flops * r for op, r in _all_ops(w) if isinstance(op, kind))


def _attention_flops(w: Workload) -> float:
    return _flops_of(w, Attention)


def _embedding_params(name: str) -> int:
    spec = hwsim.load_model_spec(name)
    return spec.vocab_size * spec.hidden_size


# ---------------------------------------------------------------------------------------
# Structure


def test_decode_structure_llama2_7b() -> None:
    """Decode of llama2-7b is embedding, 32 layers of 11 ops, final norm and LM head."""
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=1, context_len=128)
    assert w.phase == "decode" and len(w.passes) == 1
    segs = w.passes[0].segments
    assert [(s.name, s.repeat) for s in segs] == [("embed", 1), ("layer", 32), ("head", 1)]
    layer = _segment(w, "layer")
    assert list(layer) == [
        "attn_norm", "qkv_proj", "kv_cache_write", "attention", "o_proj", "attn_residual",
        "ffn_norm", "up_proj", "activation", "down_proj", "ffn_residual",
    ]
    assert w.n_ops == 32 * 11 + 1 + 2
    assert isinstance(_segment(w, "embed")["embedding"], Embedding)
    assert list(_segment(w, "head")) == ["final_norm", "lm_head"]


@pytest.mark.parametrize("phase", ["prefill", "decode", "request", "train"])
def test_to_graph_is_dag_with_every_op(phase: str) -> None:
    """to_graph() expands to a connected DAG with n_ops nodes and the workload's FLOP."""
    w = hwsim.load_workload("llama2-7b", phase=phase, batch=2, prompt_len=32, context_len=64,
                            new_tokens=3, seq_len=32, n_layers=3)
    g = w.to_graph()
    assert nx.is_directed_acyclic_graph(g)
    assert g.number_of_nodes() == w.n_ops
    assert nx.is_weakly_connected(g)
    assert len([n for n in g if g.in_degree(n) == 0]) == 1
    total = sum(g.nodes[n]["op"].flops for n in g)
    assert total == pytest.approx(w.flops, rel=1e-12)


MODELLED = hwsim.list_models()


@pytest.mark.parametrize("name", MODELLED)
def test_every_model_lowers_every_phase(name: str) -> None:
    """Each shipped model lowers for each phase it has, with positive FLOP and weights."""
    spec = hwsim.load_model_spec(name)
    phases = ["prefill", "train"] if spec.encoder_only else ["prefill", "decode", "request", "train"]
    if spec.is_ssm or spec.is_encoder_decoder:
        phases.remove("train")  # refused by name (tests/workload/test_ssm.py, test_encdec.py)
    for phase in phases:
        w = lower(spec, phase, batch=1, prompt_len=16, context_len=16, new_tokens=2, seq_len=16)
        assert w.flops > 0 and w.n_ops > 0
        assert w.resident_bytes["weights_bytes"] == spec.param_count() * 2
        # Every model layer is in exactly one segment repeat (an encoder-decoder's decode
        # step runs its decoder only).
        layers = sum(s.repeat * s.layers for s in w.passes[0].segments if s.role is SegmentRole.LAYER)
        decoder_only = spec.is_encoder_decoder and phase == "decode"
        assert layers == (spec.num_decoder_layers if decoder_only else spec.num_hidden_layers)


# ---------------------------------------------------------------------------------------
# FLOP closed forms


@pytest.mark.parametrize("name", ["llama2-7b", "llama2-70b", "gpt3-175b", "llama3-8b"])
@pytest.mark.parametrize("batch", [1, 8])
def test_decode_flops_are_two_per_param_per_token(name: str, batch: int) -> None:
    """A decode step costs 2 FLOP per non-embedding parameter (LM head included) per sequence."""
    spec = hwsim.load_model_spec(name)
    n_params = spec.param_count() - spec.vocab_size * spec.hidden_size
    if spec.tie_word_embeddings:
        n_params += spec.vocab_size * spec.hidden_size  # the head still computes
    w = hwsim.load_workload(name, phase="decode", batch=batch, context_len=64)
    assert w.flops == pytest.approx(2 * n_params * batch, rel=0.02)


def test_decode_matmul_flops_exact() -> None:
    """Decode GEMM FLOP equal 2 x batch x (every weight matrix's size), exactly."""
    spec = hwsim.load_model_spec("llama2-7b")
    batch = 4
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=batch, context_len=100)
    d = spec.hidden_size
    weights = spec.num_hidden_layers * (spec.layer_param_count() - 2 * d) + spec.vocab_size * d
    assert _flops_of(w, MatMul) == 2.0 * batch * weights


def test_decode_attention_flops_closed_form() -> None:
    """Decode attention FLOP are 4 x batch x heads x keys x head_dim per layer."""
    spec = hwsim.load_model_spec("llama2-7b")
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=3, context_len=1000)
    keys = _segment(w, "layer")["attention"].kv_len
    expected = spec.num_hidden_layers * 4.0 * 3 * 32 * keys * 128
    assert _attention_flops(w) == pytest.approx(expected, rel=1e-12)
    assert keys in (1000, 1001)


def test_prefill_lm_head_only_on_last_positions() -> None:
    """Prefill computes logits for one position per sequence: the LM head has batch rows."""
    w = hwsim.load_workload("llama2-7b", phase="prefill", batch=3, prompt_len=256)
    head = _segment(w, "head")["lm_head"]
    assert isinstance(head, MatMul) and head.m == 3 and head.n == 32000
    assert _segment(w, "head")["final_norm"].rows == 3 * 256
    assert w.passes[0].tokens == 3 * 256


@pytest.mark.parametrize("name", ["llama2-7b", "mixtral-8x7b", "gpt3-175b"])
def test_prefill_flops_scale_with_prompt_except_head_and_attention(name: str) -> None:
    """Prefill FLOP minus attention and LM head are prompt_len times a 1-token prefill's."""
    batch, prompt = 2, 512

    def parts(p: int) -> tuple[float, float, float]:
        w = hwsim.load_workload(name, phase="prefill", batch=batch, prompt_len=p, n_layers=2)
        head = _segment(w, "head")["lm_head"].flops
        return w.flops, _attention_flops(w), head

    total_1, attn_1, head_1 = parts(1)
    total_p, attn_p, head_p = parts(prompt)
    assert head_p == head_1  # one row of logits per sequence, whatever the prompt
    if name == "mixtral-8x7b":
        # Expert GEMMs round tokens per expert up; a 1-token prefill pads nothing.
        assert total_p - attn_p - head_p == pytest.approx(prompt * (total_1 - attn_1 - head_1), rel=0.01)
    else:
        assert total_p - attn_p - head_p == pytest.approx(prompt * (total_1 - attn_1 - head_1), rel=1e-12)


def test_prefill_flops_closed_form() -> None:
    """Prefill FLOP ~ 2 x tokens x non-embedding params + causal attention + head (1 %)."""
    spec = hwsim.load_model_spec("llama2-7b")
    batch, p = 2, 1024
    w = hwsim.load_workload("llama2-7b", phase="prefill", batch=batch, prompt_len=p)
    d, v, layers = spec.hidden_size, spec.vocab_size, spec.num_hidden_layers
    layer_weights = layers * (spec.layer_param_count() - 2 * d)
    causal_pairs = p * (p + 1) / 2
    attn = layers * 4.0 * batch * 32 * causal_pairs * 128
    expected = 2.0 * batch * p * layer_weights + attn + 2.0 * batch * d * v
    assert w.flops == pytest.approx(expected, rel=0.01)
    assert _attention_flops(w) == pytest.approx(attn, rel=1e-12)


def test_encoder_prefill_has_no_lm_head_and_full_attention() -> None:
    """BERT prefill has an embedding norm, non-causal attention and no LM head."""
    w = hwsim.load_workload("bert-large", phase="prefill", batch=2, prompt_len=128)
    assert [s.name for s in w.passes[0].segments] == ["embed", "layer"]
    assert "embedding_norm" in _segment(w, "embed")
    attn = _segment(w, "layer")["attention"]
    assert not attn.is_causal and attn.n_scores == 128 * 128


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("bert-large", {"batch": 8, "seq_len": 512, "lm_head": False}),
     ("llama2-7b", {"batch": 1, "seq_len": 256})],
)
def test_train_flops_follow_6nt(name: str, kwargs: dict[str, object]) -> None:
    """A training step is ~6 x non-embedding params x tokens FLOP (Kaplan's rule, 15 %)."""
    spec = hwsim.load_model_spec(name)
    w = hwsim.load_workload(name, phase="train", **kwargs)
    n = spec.param_count() - _embedding_params(name)
    if spec.tie_word_embeddings and kwargs.get("lm_head", True) and not spec.encoder_only:
        n += _embedding_params(name)
    tokens = w.passes[0].tokens
    assert tokens == kwargs["batch"] * kwargs["seq_len"]  # type: ignore[operator]
    assert w.flops == pytest.approx(6.0 * n * tokens, rel=0.15)


def test_train_backward_gemms_are_twice_forward() -> None:
    """Each forward GEMM has a data- and a weight-gradient GEMM of equal FLOP."""
    w = hwsim.load_workload("llama2-7b", phase="train", batch=2, seq_len=128, n_layers=2)
    fwd = sum(op.flops for op in _segment(w, "layer").values() if isinstance(op, MatMul))
    bwd = sum(op.flops for op in _segment(w, "layer_bwd").values() if isinstance(op, MatMul))
    assert bwd == 2 * fwd
    segs = {s.name: s.repeat for s in w.passes[0].segments}
    assert segs["layer"] == segs["layer_bwd"] == 2
    loss = _segment(w, "loss")
    lm_head = loss["lm_head"]
    assert lm_head.m == 2 * 128  # training computes logits for every token
    head_mm = sum(op.flops for op in loss.values() if isinstance(op, MatMul))
    assert head_mm == 3 * lm_head.flops  # forward, dgrad, wgrad
    assert _flops_of(w, MatMul) == pytest.approx(3 * (2 * fwd + lm_head.flops), rel=1e-12)


def test_train_step_is_about_three_forwards() -> None:
    """BERT's train step (loss on hidden states) costs about 3x the forward's FLOP."""
    train = hwsim.load_workload("bert-large", phase="train", batch=4, seq_len=256, lm_head=False)
    fwd = hwsim.load_workload("bert-large", phase="prefill", batch=4, prompt_len=256)
    assert train.flops / fwd.flops == pytest.approx(3.0, rel=0.05)


def test_train_has_one_optimizer_update_over_all_params() -> None:
    """One fused AdamW updates every parameter once, and state is resident in fp32."""
    spec = hwsim.load_model_spec("llama2-7b")
    w = hwsim.load_workload("llama2-7b", phase="train", batch=1, seq_len=64)
    opts = [(op, r) for op, r in _all_ops(w) if isinstance(op, Optimizer)]
    assert len(opts) == 1 and opts[0][1] == 1
    assert opts[0][0].n_params == spec.param_count()
    res = w.resident_bytes
    assert res["gradients_bytes"] == res["weights_bytes"] == spec.param_count() * 2
    assert res["optimizer_state_bytes"] == spec.param_count() * 8
    assert res["activations_bytes"] > 0


# ---------------------------------------------------------------------------------------
# Model features


def test_gqa_attention_reads_one_eighth_of_mha_kv() -> None:
    """llama2-70b attention has 8 KV heads; its K/V bytes are 1/8 of the MHA equivalent."""
    w = hwsim.load_workload("llama2-70b", phase="decode", batch=4, context_len=1024)
    attn = _segment(w, "layer")["attention"]
    assert isinstance(attn, Attention)
    assert (attn.n_heads, attn.n_kv_heads, attn.head_dim) == (64, 8, 128)
    mha = Attention(attn.batch, attn.n_heads, attn.n_heads, attn.q_len, attn.kv_len, attn.head_dim)
    assert attn.kv_bytes == mha.kv_bytes / 8
    assert attn.flops == mha.flops  # GQA saves bytes, not FLOP
    qkv = _segment(w, "layer")["qkv_proj"]
    assert qkv.n == (64 + 2 * 8) * 128


def test_gqa_kv_cache_bytes() -> None:
    """llama2-70b's KV cache is layers x batch x tokens x 2 x 8 heads x 128 x 2 B (bf16)."""
    w = hwsim.load_workload("llama2-70b", phase="prefill", batch=2, prompt_len=4096)
    assert w.resident_bytes["kv_cache_bytes"] == 80 * 2 * 4096 * 2 * 8 * 128 * 2


def test_gated_ffn_vs_gelu_ffn() -> None:
    """SwiGLU (llama) fuses gate and up (n = 2 ff) with silu_mul; GPT-3 has n = ff and GELU."""
    llama = _segment(hwsim.load_workload("llama2-7b", phase="decode", context_len=16), "layer")
    assert llama["up_proj"].n == 2 * 11008 and llama["down_proj"].k == 11008
    assert llama["activation"].op_kind == "silu_mul" and llama["activation"].cols == 11008
    assert llama["attn_norm"].op_kind == "rmsnorm"
    gpt3 = _segment(hwsim.load_workload("gpt3-175b", phase="decode", context_len=16), "layer")
    assert gpt3["up_proj"].n == 49152 and gpt3["down_proj"].k == 49152
    assert gpt3["activation"].op_kind == "gelu"
    assert gpt3["attn_norm"].op_kind == "layernorm"


def test_moe_decode_touches_top_k_experts() -> None:
    """Mixtral decode of one token reads exactly 2 experts' weights (top-2 of 8)."""
    spec = hwsim.load_model_spec("mixtral-8x7b")
    d, ff = spec.hidden_size, spec.ffn_size
    layer = _segment(hwsim.load_workload("mixtral-8x7b", phase="decode", batch=1, context_len=64), "layer")
    up, down = layer["expert_up_proj"], layer["expert_down_proj"]
    assert up.batch == down.batch == 2
    assert up.b_bytes + down.b_bytes == 2 * 3 * d * ff * 2
    assert layer["router"].n == 8


def test_moe_prefill_touches_every_expert() -> None:
    """A 512-token Mixtral prefill routes to all 8 experts, 2 x 512 token-slots in total."""
    layer = _segment(hwsim.load_workload("mixtral-8x7b", phase="prefill", batch=1, prompt_len=512), "layer")
    up = layer["expert_up_proj"]
    assert up.batch == 8
    assert up.m * up.batch == 2 * 512


def test_moe_decode_flops_use_active_params() -> None:
    """Mixtral decode FLOP follow its ~12.9 B active parameters, not its 46.7 B total."""
    spec = hwsim.load_model_spec("mixtral-8x7b")
    d, ff = spec.hidden_size, spec.ffn_size
    active = spec.param_count() - spec.num_hidden_layers * 6 * 3 * d * ff
    assert active == pytest.approx(12.9e9, rel=0.01)
    w = hwsim.load_workload("mixtral-8x7b", phase="decode", batch=1, context_len=64)
    assert w.flops == pytest.approx(2 * (active - spec.vocab_size * d), rel=0.02)


@pytest.mark.parametrize(("tokens", "expected"), [(1, 2), (2, 4), (4, 5), (16, 8), (512, 8)])
def test_experts_touched(tokens: int, expected: int) -> None:
    """Expected distinct experts for top-2 of 8: E(1 - (1 - k/E)^T), between k and E."""
    assert experts_touched(tokens, 8, 2) == expected


def test_experts_touched_is_monotone() -> None:
    """More tokens never touch fewer experts, and never more than exist."""
    counts = [experts_touched(t, 64, 4) for t in range(1, 300)]
    assert counts == sorted(counts)
    assert counts[0] == 4 and counts[-1] == 64


# ---------------------------------------------------------------------------------------
# Overrides and requests


def test_n_layers_override() -> None:
    """n_layers sets the layer repeat, the op count and the resident weights."""
    full = hwsim.load_model_spec("llama2-7b")
    w = hwsim.load_workload("llama2-7b", phase="decode", n_layers=4, context_len=32)
    assert w.n_ops == 4 * 11 + 3
    assert w.params["n_layers"] == 4
    expected = full.param_count() - 28 * full.layer_param_count()
    assert w.resident_bytes["weights_bytes"] == expected * 2


def test_dtype_override_halves_bytes() -> None:
    """fp8 halves weight and KV-cache bytes versus bf16; every op carries fp8."""
    bf16 = hwsim.load_workload("llama2-7b", phase="decode", context_len=512)
    fp8 = hwsim.load_workload("llama2-7b", phase="decode", context_len=512, dtype="fp8")
    assert fp8.resident_bytes["weights_bytes"] == bf16.resident_bytes["weights_bytes"] / 2
    assert fp8.resident_bytes["kv_cache_bytes"] == bf16.resident_bytes["kv_cache_bytes"] / 2
    assert fp8.flops == bf16.flops
    assert {op.dtype for op, _ in _all_ops(fp8) if not isinstance(op, Optimizer)} == {"fp8"}
    up = _segment(fp8, "layer")["up_proj"]
    assert up.b_bytes == 4096 * 2 * 11008 * 1


def test_dtype_alias_is_normalised() -> None:
    """dtype="bfloat16" lowers exactly like "bf16"."""
    a = hwsim.load_workload("llama2-7b", phase="decode", context_len=64, dtype="bfloat16")
    b = hwsim.load_workload("llama2-7b", phase="decode", context_len=64, dtype="bf16")
    assert a.params["dtype"] == "bf16"
    assert a.resident_bytes == b.resident_bytes and a.flops == b.flops


def test_weights_bytes_are_params_times_width() -> None:
    """Resident weights are param_count() x bytes per element for every dtype."""
    spec = hwsim.load_model_spec("llama3-8b")
    for dtype in ("fp32", "bf16", "fp8", "int4"):
        w = hwsim.load_workload("llama3-8b", phase="decode", context_len=16, dtype=dtype)
        assert w.resident_bytes["weights_bytes"] == spec.param_count() * dtype_bytes(dtype)


def test_request_passes_and_growing_kv() -> None:
    """A request is a prefill then new_tokens decode steps, keys growing by one per step."""
    w = hwsim.load_workload("llama2-7b", phase="request", batch=2, prompt_len=100, new_tokens=5,
                            n_layers=2)
    assert len(w.passes) == 1 + 5
    assert w.passes[0].name == "prefill" and w.passes[0].tokens == 2 * 100
    assert all(p.tokens == 2 for p in w.passes[1:])
    kv = [_segment(w, "layer", i)["attention"].kv_len for i in range(1, 6)]
    assert [b - a for a, b in zip(kv, kv[1:], strict=False)] == [1, 1, 1, 1]
    assert kv[0] in (100, 101)
    assert all(_segment(w, "layer", i)["attention"].q_len == 1 for i in range(1, 6))


@pytest.mark.parametrize(
    "phase",
    [
        "prefill",
        "decode",
        "request",
    ],
)
def test_last_pass_attends_the_whole_resident_cache(phase: str) -> None:
    """The last pass's attention reads exactly the K/V bytes the resident KV cache holds."""
    layers = 2
    w = hwsim.load_workload("llama2-7b", phase=phase, batch=2, prompt_len=100, context_len=100,
                            new_tokens=4, n_layers=layers)
    attn = _segment(w, "layer", len(w.passes) - 1)["attention"]
    assert layers * attn.kv_bytes == w.resident_bytes["kv_cache_bytes"]


def test_params_record_the_lowering() -> None:
    """Workload.params record batch, dtype, layers and the phase's lengths."""
    w = hwsim.load_workload("llama2-7b", phase="request", batch=3, prompt_len=7, new_tokens=2)
    assert w.params["batch"] == 3 and w.params["prompt_len"] == 7 and w.params["new_tokens"] == 2
    assert w.params["dtype"] == "bf16" and w.params["n_layers"] == 32
    assert w.name == "llama2-7b" and w.phase == "request"


def test_naive_attention_impl_is_propagated() -> None:
    """attention_impl="naive" reaches every attention op."""
    w = hwsim.load_workload("llama2-7b", phase="prefill", prompt_len=64, attention_impl="naive")
    assert _segment(w, "layer")["attention"].impl == "naive"


def test_sparsity_reaches_weight_gemms_only() -> None:
    """sparsity="2:4" marks the layers' weight GEMMs; the LM head and attention stay dense."""
    w = hwsim.load_workload("llama2-7b", phase="decode", context_len=64, sparsity="2:4")
    layer = _segment(w, "layer")
    for name in ("qkv_proj", "o_proj", "up_proj", "down_proj"):
        assert layer[name].sparsity == "2:4"
    assert _segment(w, "head")["lm_head"].sparsity is None


def test_elementwise_rows_match_tokens() -> None:
    """Norms and residual adds in a prefill run over batch x prompt rows of hidden size."""
    layer = _segment(hwsim.load_workload("llama2-7b", phase="prefill", batch=2, prompt_len=64), "layer")
    for name in ("attn_norm", "attn_residual", "ffn_norm", "ffn_residual"):
        op = layer[name]
        assert isinstance(op, Elementwise) and (op.rows, op.cols) == (128, 4096)


# ---------------------------------------------------------------------------------------
# Invalid lowering options

INVALID_OPTIONS = {
    "bad_phase": ({"phase": "inference"}, "phase"),
    "bad_dtype": ({"dtype": "fp7"}, "dtype"),
    "zero_batch": ({"batch": 0}, "batch"),
    "fractional_batch": ({"batch": 1.5}, "batch"),
    "zero_prompt": ({"phase": "prefill", "prompt_len": 0}, "prompt_len"),
    "zero_context": ({"phase": "decode", "context_len": 0}, "context_len"),
    "zero_new_tokens": ({"phase": "request", "new_tokens": 0}, "new_tokens"),
    "negative_seq": ({"phase": "train", "seq_len": -1}, "seq_len"),
    "zero_layers": ({"n_layers": 0}, "n_layers"),
    "bad_attention_impl": ({"attention_impl": "paged"}, "attention_impl"),
}


@pytest.mark.parametrize("case", sorted(INVALID_OPTIONS))
def test_invalid_option_raises_config_error(case: str) -> None:
    """A bad lowering option raises ConfigError naming the workload and the option."""
    kwargs, field = INVALID_OPTIONS[case]
    with pytest.raises(ConfigError) as info:
        hwsim.load_workload("llama2-7b", **kwargs)  # type: ignore[arg-type]
    assert any(line.startswith("workload llama2-7b: ") and f": {field}:" in line
               for line in info.value.problems), info.value.problems


@pytest.mark.parametrize("phase", ["decode", "request"])
def test_encoder_has_no_decode(phase: str) -> None:
    """An encoder-only model (BERT) cannot be lowered for decode or request."""
    with pytest.raises(ConfigError) as info:
        hwsim.load_workload("bert-large", phase=phase)
    assert "encoder" in str(info.value) and "phase" in str(info.value)


@pytest.mark.parametrize("pattern", ["2-4", "4:2", "dense", "0:4"])
def test_malformed_sparsity_pattern_rejected(pattern: str) -> None:
    """A sparsity that is not an N:M pattern with 0 < N < M raises ConfigError naming sparsity."""
    with pytest.raises(ConfigError) as info:
        hwsim.load_workload("llama2-7b", phase="decode", sparsity=pattern)
    assert any(": sparsity:" in line for line in info.value.problems)
