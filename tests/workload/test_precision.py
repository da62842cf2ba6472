"""Precision per tensor class: schemes, mappings, shorthands, resident bytes, refusals."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.dtypes import DTYPE_BYTES, FORMATS, accumulator_dtype
from hwsim.errors import ConfigError
from hwsim.workload.ops import Attention, Elementwise, MatMul
from hwsim.workload.precision import SCHEMES, Precision, resolve_precision, weight_bits_per_param

SMALL = {"n_layers": 2, "context_len": 512}


def _ops(workload):
    return [(name, op) for p in workload.passes for s in p.segments for name, op in s.graph.ops()]


def test_block_formats_carry_their_scales():
    """NVFP4 is 4 bits + an 8-bit scale per 16; MXFP4/6/8 an 8-bit scale per 32."""
    assert FORMATS["nvfp4"].bits == 4 + 8 / 16
    assert DTYPE_BYTES["mxfp4"] == (4 + 8 / 32) / 8
    assert DTYPE_BYTES["mxfp6"] == (6 + 8 / 32) / 8
    assert DTYPE_BYTES["mxfp8"] == (8 + 8 / 32) / 8
    assert DTYPE_BYTES["int2"] == 0.25 and DTYPE_BYTES["fp6"] == 0.75
    assert accumulator_dtype("mxfp4") == "bf16" and accumulator_dtype("int2") == "int8"


def test_every_scheme_resolves():
    """Each named scheme gives a valid Precision labelled by its name."""
    for name in SCHEMES:
        prec = resolve_precision("t", name)
        assert prec.name == name


def test_w16a16_is_bit_for_bit_the_bf16_path():
    """The w16a16 scheme (and bf16, and a bf16 mapping) equal today's single-dtype results exactly."""
    ref = hwsim.simulate(hwsim.load_workload("llama2-7b", **SMALL), "h100-sxm")
    for precision in ("w16a16", "bf16", {"weights": "bf16"}):
        res = hwsim.simulate(hwsim.load_workload("llama2-7b", precision=precision, **SMALL), "h100-sxm")
        assert res.latency_s == ref.latency_s
        assert res.energy_j == ref.energy_j
        assert res.bytes_by_level == ref.bytes_by_level


def test_w4a16_weight_bytes_closed_form():
    """Layer weights at 4 bits plus one fp16 scale per 128; embeddings and head at 2 bytes."""
    spec = hwsim.load_workload("llama2-7b").spec
    w = hwsim.load_workload("llama2-7b", precision="w4a16")
    emb, head = spec.embedding_param_count(), spec.head_param_count()
    layers = spec.param_count() - emb - head
    expected = layers * (4 + 16 / 128) / 8 + (emb + head) * 2
    assert w.resident_bytes["weights_bytes"] == pytest.approx(expected, rel=1e-12)
    zp = hwsim.load_workload("llama2-7b", precision={"scheme": "w4a16", "zero_point": True, "group_size": 64})
    assert zp.resident_bytes["weights_bytes"] == pytest.approx(layers * (4 + 20 / 64) / 8 + (emb + head) * 2)


def test_w4a16_gemm_reads_packed_weights():
    """A W4A16 weight GEMM reads k*n*(4 + 16/g)/8 bytes of B and runs at the bf16 rate."""
    w = hwsim.load_workload("llama2-7b", precision="w4a16", **SMALL)
    qkv = next(op for name, op in _ops(w) if name == "qkv_proj")
    assert qkv.dtype == "bf16" and qkv.w_dtype == "int4" and qkv.group_size == 128
    assert qkv.b_bytes == qkv.k * qkv.n * (4 + 16 / 128) / 8
    assert weight_bits_per_param("int4", "bf16", 128, False) == 4.125
    assert not any(isinstance(op, Elementwise) and op.op_kind.startswith("quantize") for _, op in _ops(w))


def test_w8a8_quantizes_each_gemm_input():
    """W8A8 runs weight GEMMs in int8, each behind a dynamic per-token quantization op."""
    w = hwsim.load_workload("llama2-7b", precision="w8a8", **SMALL)
    ops = dict(_ops(w))
    assert ops["qkv_proj"].dtype == "int8" and ops["qkv_proj"].w_dtype is None
    quant = ops["qkv_proj_quant"]
    assert isinstance(quant, Elementwise) and quant.op_kind == "quantize8" and quant.dtype == "bf16"
    assert quant.min_bytes == quant.n_elements * (2 + 1)  # read bf16, write int8
    norm = next(op for name, op in _ops(w) if name == "attn_norm")
    assert norm.dtype == "bf16"  # norms stay in base


def test_kv_dtype_halves_kv_bytes():
    """kv_dtype=fp8 halves the cache's resident bytes and attention's K/V reads."""
    ref = hwsim.load_workload("llama2-7b", **SMALL)
    fp8 = hwsim.load_workload("llama2-7b", kv_dtype="fp8", **SMALL)
    assert fp8.resident_bytes["kv_cache_bytes"] == ref.resident_bytes["kv_cache_bytes"] / 2
    assert fp8.resident_bytes["weights_bytes"] == ref.resident_bytes["weights_bytes"]
    a_ref = next(op for _, op in _ops(ref) if isinstance(op, Attention))
    a_fp8 = next(op for _, op in _ops(fp8) if isinstance(op, Attention))
    assert a_fp8.kv_dtype == "fp8" and a_fp8.dtype == "bf16"
    assert a_fp8.kv_bytes == a_ref.kv_bytes / 2


def test_weight_dtype_shorthand():
    """weight_dtype=int4 is the w4a16 weights; it no longer raises TypeError."""
    a = hwsim.load_workload("llama2-7b", weight_dtype="int4", **SMALL)
    b = hwsim.load_workload("llama2-7b", precision="w4a16", **SMALL)
    assert a.resident_bytes == b.resident_bytes


def test_layer_overrides_split_the_layer_runs():
    """First and last layers in bf16 under w4a16: three runs, their weights at 2 bytes."""
    prec = {"scheme": "w4a16", "layers": {0: "bf16", 3: "bf16"}}
    w = hwsim.load_workload("llama2-7b", n_layers=4, precision=prec)
    layers = [s for s in w.passes[0].segments if s.role.value == "layer"]
    assert [s.repeat * s.layers for s in layers] == [1, 2, 1]
    first = dict(layers[0].graph.ops())["qkv_proj"]
    middle = dict(layers[1].graph.ops())["qkv_proj"]
    assert first.w_dtype is None and first.dtype == "bf16"
    assert middle.w_dtype == "int4"
    plain = hwsim.load_workload("llama2-7b", n_layers=4, precision="w4a16")
    spec = plain.spec.model_copy(update={"num_hidden_layers": 4})
    extra = 2 * spec.layer_param_count(0) * (2 - 4.125 / 8)
    assert w.resident_bytes["weights_bytes"] == pytest.approx(plain.resident_bytes["weights_bytes"] + extra)


@pytest.mark.parametrize(("kwargs", "path"), [
    ({"precision": "w3a5"}, "precision: unknown scheme"),
    ({"precision": {"weights": "int3"}}, "precision: weights: unknown dtype"),
    ({"precision": {"wieghts": "int4"}}, "precision: wieghts: unknown precision field"),
    ({"precision": {"weights": "bf16", "activations": "fp8"}}, "weights: bf16 weights are wider"),
    ({"precision": {"scheme": "w4a16", "group_size": -1}}, "group_size: must be a non-negative"),
    ({"precision": {"scheme": "w4a16", "layers": {-1: "bf16"}}}, "layers: layer index"),
    ({"precision": "w4a16", "dtype": "fp8"}, "dtype: give either"),
    ({"kv_dtype": "fp3"}, "kv_dtype: unknown dtype"),
    ({"precision": 3}, "precision: expected a scheme name"),
])
def test_bad_precisions_name_the_field(kwargs, path):
    """Bad precisions raise ConfigError naming the field, never TypeError."""
    with pytest.raises(ConfigError, match=path):
        hwsim.load_workload("llama2-7b", **SMALL, **kwargs)


def test_fp8_training_is_refused_but_state_dtypes_apply():
    """Train refuses fp8 without qat (real fp8 training GEMMs are not modelled; QAT is, see
    tests/workload/test_qat.py); gradients and optimizer dtypes apply."""
    with pytest.raises(ConfigError, match="fp8 training GEMMs .* not modelled.*qat: true"):
        hwsim.load_workload("llama2-7b", phase="train", n_layers=2, seq_len=256, precision="fp8")
    ref = hwsim.load_workload("llama2-7b", phase="train", n_layers=2, seq_len=256)
    w = hwsim.load_workload("llama2-7b", phase="train", n_layers=2, seq_len=256,
                            precision={"gradients": "fp32", "optimizer_state": "bf16"})
    assert w.resident_bytes["gradients_bytes"] == 2 * ref.resident_bytes["gradients_bytes"]
    assert w.resident_bytes["optimizer_state_bytes"] == ref.resident_bytes["optimizer_state_bytes"] / 2


def test_uniform_precision_object_equals_dtype():
    """Precision.uniform('fp8') is the legacy dtype='fp8' workload."""
    a = hwsim.load_workload("llama2-7b", dtype="fp8", **SMALL)
    b = hwsim.load_workload("llama2-7b", precision=Precision.uniform("fp8"), **SMALL)
    assert a.resident_bytes == b.resident_bytes and a.params == b.params


def test_matmul_default_bytes_unchanged():
    """A MatMul without w_dtype keeps its single-dtype byte count."""
    op = MatMul(4, 4096, 4096, "bf16", bias=True)
    assert op.b_bytes == 4097 * 4096 * 2


def test_streamed_weights_and_kv_move_at_their_widths():
    """Offloaded weights stream at 4.125 bits under w4a16; an offloaded fp8 cache at 1 byte."""
    plan = hwsim.Plan(offload=("weights", "kv_cache"))
    ref = hwsim.load_workload("llama2-7b", plan=plan, **SMALL)
    quant = hwsim.load_workload("llama2-7b", plan=plan, precision="w4a16-fp8kv", **SMALL)

    def streams(w):
        return {n: op.n_bytes for n, op in _ops(w) if n in ("weights_stream", "kv_stream", "kv_writeback")}

    a, b = streams(ref), streams(quant)
    assert set(a) == {"weights_stream", "kv_stream", "kv_writeback"} == set(b)
    assert b["weights_stream"] == pytest.approx(a["weights_stream"] * 4.125 / 16)
    assert b["kv_stream"] == pytest.approx(a["kv_stream"] / 2)
    assert b["kv_writeback"] == pytest.approx(a["kv_writeback"] / 2)
