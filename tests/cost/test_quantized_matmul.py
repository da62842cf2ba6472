"""Quantized GEMMs: packed weight bytes, dequantization on the vector units, native and
emulated formats; whole-model decode and serving under precisions."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.cost import cost_op
from hwsim.errors import MappingError
from hwsim.workload.ops import MatMul

H100 = hwsim.load_arch("h100-sxm")
SMALL = {"n_layers": 2, "context_len": 512}


def _native_fp4_chip():
    """An imagined H100 with NVFP4/MXFP4 math at twice its fp8 rate."""
    unit = H100.compute_units
    rates = {**unit.flops_per_cycle, "nvfp4": 16384.0, "mxfp4": 16384.0}
    return H100.model_copy(update={"name": "h100-fp4", "compute_units": unit.model_copy(
        update={"flops_per_cycle": rates})})


def _home(cost):
    return cost.traffic[-1]


def test_w4a16_gemv_reads_packed_weights_from_hbm():
    """A batch-1 W4A16 GEMV reads its activations plus k*n*(4+16/128)/8 weight bytes from HBM."""
    op = MatMul(1, 4096, 11008, "bf16", w_dtype="int4", group_size=128)
    dense = cost_op(MatMul(1, 4096, 11008, "bf16"), H100)
    quant = cost_op(op, H100)
    packed = 4096 * 11008 * 4.125 / 8
    assert _home(quant).read_bytes == pytest.approx(_home(dense).read_bytes - 4096 * 11008 * 2 + packed)
    assert quant.latency_s < dense.latency_s


def test_dequantization_costs_vector_time():
    """A compute-bound W4A16 GEMM pays its dequantization on the vector units on top of the MMAs."""
    dense = cost_op(MatMul(4096, 4096, 4096, "bf16"), H100)
    quant = cost_op(MatMul(4096, 4096, 4096, "bf16", w_dtype="int4", group_size=128), H100)
    vec = H100.vector_units
    assert quant.compute_s > dense.compute_s
    # Each 128-or-more-row tile of the output dequantizes its copy of B: at most 32 copies.
    extra = quant.compute_s - dense.compute_s
    per_copy = 4096 * 4096 * vec.dequant_ops_per_element / vec.peak_ops_per_s
    assert per_copy <= extra <= 32 * per_copy * 1.0001
    assert quant.compute_energy_j > dense.compute_energy_j


def test_decode_faster_with_narrower_weights():
    """Batch-1 decode on H100 is memory bound: bf16 > w8a16 > w4a16 > w2a16 in latency."""
    lat = {}
    for p in ("bf16", "w8a16", "w4a16", "w2a16"):
        res = hwsim.simulate(hwsim.load_workload("llama2-7b", precision=p, context_len=512), "h100-sxm")
        assert res.energy_j > 0 and all(v >= 0 for v in res.energy_breakdown_j.values())
        lat[p] = res.latency_s
    assert lat["bf16"] > lat["w8a16"] > lat["w4a16"] > lat["w2a16"]
    assert lat["bf16"] / lat["w4a16"] > 2.0


def test_unsupported_format_is_emulated_and_said():
    """NVFP4 on an H100 runs emulated at the bf16 rate and says so; 'refuse' refuses it."""
    res = hwsim.simulate(hwsim.load_workload("llama2-7b", precision="nvfp4", **SMALL), "h100-sxm")
    assert any("no nvfp4 matrix math" in w and "emulated" in w for w in res.warnings)
    assert res.peak_flops_per_s == H100.peak_flops_per_s("bf16")
    with pytest.raises(MappingError, match="nvfp4"):
        refuse = {"scheme": "nvfp4", "on_unsupported": "refuse"}
        hwsim.simulate(hwsim.load_workload("llama2-7b", precision=refuse, **SMALL), "h100-sxm")
    native = hwsim.simulate(hwsim.load_workload("llama2-7b", precision="nvfp4", **SMALL), _native_fp4_chip())
    assert not any("emulated" in w for w in native.warnings)
    # The imagined chip states no nvfp4 MAC energy: the result says those MACs cost none.
    assert any("no energy_per_mac_pj for nvfp4" in w for w in native.warnings)


def test_native_fp4_prefill_is_faster_than_bf16():
    """On a chip with native NVFP4 math, a compute-bound prefill beats bf16 and its own emulation."""
    chip = _native_fp4_chip()
    kw = {"n_layers": 2, "prompt_len": 2048}
    bf16 = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="prefill", **kw), chip)
    fp4 = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="prefill", precision="nvfp4", **kw), chip)
    emul = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="prefill", precision="nvfp4", **kw), H100)
    assert fp4.latency_s < bf16.latency_s < emul.latency_s


def test_legacy_unsupported_dtype_still_refused():
    """A single-dtype workload in a dtype the chip lacks is refused, as before."""
    with pytest.raises(MappingError, match="int4"):
        hwsim.simulate(hwsim.load_workload("llama2-7b", dtype="int4", **SMALL), "h100-sxm")


def test_kv_fp8_doubles_serving_kv_capacity():
    """serve(kv_dtype='fp8') holds twice the KV blocks of bf16 (same weights)."""
    req = hwsim.Requests.offline(8, prompt_len=128, output_len=8)
    ref = hwsim.serve(req, "h100-sxm", model="llama2-7b", n_layers=4)
    fp8 = hwsim.serve(req, "h100-sxm", model="llama2-7b", n_layers=4, kv_dtype="fp8")
    p_ref, p_fp8 = ref.config["pools"][0], fp8.config["pools"][0]
    assert p_fp8["weights_bytes_per_chip"] == p_ref["weights_bytes_per_chip"]
    assert p_fp8["kv_blocks"] in (2 * p_ref["kv_blocks"], 2 * p_ref["kv_blocks"] + 1)
    w4 = hwsim.serve(req, "h100-sxm", model="llama2-7b", n_layers=4, precision="w4a16")
    assert w4.config["pools"][0]["weights_bytes_per_chip"] < p_ref["weights_bytes_per_chip"] / 2


def test_serve_warns_on_emulated_format():
    """Serving NVFP4 on an H100 carries the emulation warning."""
    req = hwsim.Requests.offline(4, prompt_len=64, output_len=4)
    res = hwsim.serve(req, "h100-sxm", model="llama2-7b", n_layers=2, precision="nvfp4")
    assert any("no nvfp4 matrix math" in w for w in res.warnings)


def test_single_gemm_with_quantized_weights():
    """hwsim.ops.gemm(weight_dtype='int4') is the packed GEMM; wider weights are refused."""
    w = hwsim.ops.gemm(1, 4096, 4096, "bf16", weight_dtype="int4", group_size=64)
    op = next(op for p in w.passes for s in p.segments for _, op in s.graph.ops())
    assert op.w_dtype == "int4" and op.b_bytes == 4096 * 4096 * (4 + 16 / 64) / 8
    dense = hwsim.simulate(hwsim.ops.gemm(1, 4096, 4096), "h100-sxm")
    assert hwsim.simulate(w, "h100-sxm").latency_s < dense.latency_s
    with pytest.raises(hwsim.ConfigError, match="weight_dtype"):
        hwsim.ops.gemm(1, 64, 64, "fp8", weight_dtype="bf16")
    emulated = hwsim.simulate(hwsim.ops.gemm(256, 4096, 4096, "mxfp4", emulate=True), "h100-sxm")
    assert any("mxfp4" in line for line in emulated.warnings)


def test_fp8_kv_attention_reads_half_and_pays_dequant():
    """An fp8 cache under bf16 attention reads half the K/V bytes and dequantizes them on the
    vector units (2 ops per element); a bf16 cache pays nothing extra."""
    from hwsim.cost.attention import kv_dequant_ops
    from hwsim.workload.ops import Attention

    ref = Attention(8, 32, 8, 1, 8192, 128)
    fp8 = Attention(8, 32, 8, 1, 8192, 128, kv_dtype="fp8")
    assert fp8.kv_bytes == ref.kv_bytes / 2
    assert kv_dequant_ops(H100, ref, 1e6) == 0.0
    a, b = cost_op(ref, H100), cost_op(fp8, H100)
    elements = fp8.kv_bytes / fp8.kv_elem_bytes
    extra = elements * H100.vector_units.dequant_ops_per_element / H100.vector_units.peak_ops_per_s
    assert b.compute_s == pytest.approx(a.compute_s + extra)
    assert b.traffic[-1].read_bytes < a.traffic[-1].read_bytes
    assert b.latency_s < a.latency_s
