"""Smoothing scales (SmoothQuant, AWQ): where each layer GEMM's scale goes, what an
explicit one costs, refusals, and that folded (or no) smoothing changes no number."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.cost import cost_op
from hwsim.errors import ConfigError
from hwsim.workload.ops import Elementwise, MatMul
from hwsim.workload.smoothing import smooth_op

DECODE = {"n_layers": 2, "context_len": 512}


def _w8a8(smoothing: str) -> dict[str, str]:
    return {"scheme": "w8a8", "smoothing": smoothing}


def _layer_ops(workload):
    seg = next(s for s in workload.passes[0].segments if s.role.value == "layer")
    return dict(seg.graph.ops())


def _smooth_ops(workload):
    return {n: op for n, op in _layer_ops(workload).items()
            if isinstance(op, Elementwise) and op.op_kind == "smooth_scale"}


def _note(workload) -> str:
    return next(w for w in workload.warnings if w.startswith("smoothing"))


@pytest.mark.parametrize("bad", ["smoothquant2", "gptq", 3, None])
def test_unknown_smoothing_is_refused(bad):
    """An unknown smoothing name raises ConfigError naming precision.smoothing."""
    with pytest.raises(ConfigError, match=r"precision: smoothing: expected one of none, smoothquant"):
        hwsim.load_workload("llama2-7b", precision={"scheme": "w8a8", "smoothing": bad}, **DECODE)


def test_smoothing_without_quantization_is_refused():
    """Smoothing a precision that quantizes no GEMM (all bf16, or only an fp8 KV cache) is refused."""
    for scheme in ("bf16", "kv-fp8"):
        with pytest.raises(ConfigError, match="smoothing: awq .* quantizes no GEMM"):
            hwsim.load_workload("llama2-7b", precision={"scheme": scheme, "smoothing": "awq"}, **DECODE)


def test_llama_layer_unfoldable_gemms():
    """LLaMA-3.1-8B (GQA, gated FFN): SmoothQuant folds q/k/v and gate/up and leaves o_proj and
    down_proj (2 GEMMs) unsmoothed; AWQ also folds down_proj into up_proj and leaves o_proj;
    smoothing every GEMM makes o_proj (1 GEMM) an explicit multiply."""
    sq = hwsim.load_workload("llama3.1-8b", precision=_w8a8("smoothquant"), **DECODE)
    note = _note(sq)
    assert "qkv_proj, up_proj into the norm before it" in note
    assert "left unsmoothed: o_proj, down_proj" in note
    assert not _smooth_ops(sq)
    awq = hwsim.load_workload("llama3.1-8b", precision=_w8a8("awq"), **DECODE)
    assert "down_proj into up_proj" in _note(awq) and "left unsmoothed: o_proj" in _note(awq)
    assert not _smooth_ops(awq)
    full = hwsim.load_workload("llama3.1-8b", precision=_w8a8("smoothquant-full"), **DECODE)
    assert set(_smooth_ops(full)) == {"o_proj_smooth"}


def test_awq_folds_o_proj_under_multi_head_attention():
    """LLaMA-2-7B (32 KV heads = 32 heads): AWQ folds o_proj's scale into v_proj, every GEMM folded."""
    awq = hwsim.load_workload("llama2-7b", precision=_w8a8("awq"), **DECODE)
    note = _note(awq)
    assert "o_proj into the value projection" in note
    assert "unsmoothed" not in note and "explicit" not in note


def test_explicit_scale_closed_form():
    """An explicit smoothing multiply reads m*k inputs and k scales, writes m*k, one op per element."""
    gemm = MatMul(64, 11008, 4096, "int8")
    op = smooth_op(gemm, "bf16")
    assert op.flops == 64 * 11008
    assert op.vector_bytes == 11008 * 2
    assert op.min_bytes == 2 * 64 * 11008 * 2 + 11008 * 2
    h100 = hwsim.load_arch("h100-sxm")
    home = cost_op(op, h100).traffic[-1]
    assert home.read_bytes == pytest.approx(64 * 11008 * 2 + 11008 * 2)
    assert home.write_bytes == pytest.approx(64 * 11008 * 2)


def test_awq_after_plain_gelu_scales_down_proj_explicitly():
    """BLOOM's GELU FFN: AWQ's ScaledActivation is one multiply over batch x ffn width before down_proj,
    with one scale per channel; w4a16-awq (weight-only) gets it too."""
    for precision in (_w8a8("awq"), "w4a16-awq"):
        w = hwsim.load_workload("bloom-7b1", precision=precision, batch=4, **DECODE)
        ops = _smooth_ops(w)
        assert set(ops) == {"down_proj_smooth"}
        down = _layer_ops(w)["down_proj"]
        assert (ops["down_proj_smooth"].rows, ops["down_proj_smooth"].cols) == (4, down.k)
        assert ops["down_proj_smooth"].vector_bytes == down.k * 2
        assert "ScaledActivation" in _note(w)


def test_folded_smoothing_changes_no_number():
    """Folded scales cost nothing: w8a8 with AWQ on LLaMA-2-7B (all folded), SmoothQuant, and an
    explicit 'none' give w8a8's latency and energy exactly."""
    ref = hwsim.simulate(hwsim.load_workload("llama2-7b", precision="w8a8", **DECODE), "h100-sxm")
    for precision in (_w8a8("awq"), _w8a8("SmoothQuant "), "w8a8-smoothquant", _w8a8("none")):
        res = hwsim.simulate(hwsim.load_workload("llama2-7b", precision=precision, **DECODE), "h100-sxm")
        assert res.latency_s == ref.latency_s and res.energy_j == ref.energy_j


def test_explicit_scales_cost_more_with_more_tokens():
    """Explicit multiplies only add time and energy, and what they add grows with the tokens."""
    extra = []
    for batch in (1, 16, 256):
        kw = {"phase": "prefill", "batch": batch, "prompt_len": 128, "n_layers": 2}
        base = hwsim.simulate(hwsim.load_workload("llama3.1-8b", precision="w8a8", **kw), "h100-sxm")
        full = hwsim.simulate(hwsim.load_workload("llama3.1-8b", precision=_w8a8("smoothquant-full"), **kw),
                              "h100-sxm")
        assert full.latency_s > base.latency_s and full.energy_j > base.energy_j
        extra.append(full.latency_s - base.latency_s)
    assert extra[0] < extra[1] < extra[2]


def test_default_precision_has_no_smoothing():
    """Precision's default smoothing is 'none' and an Elementwise without a vector keeps its bytes."""
    assert hwsim.load_workload("llama2-7b", precision="w8a8", **DECODE).precision.smoothing == "none"
    op = Elementwise("rmsnorm", 8, 4096, "bf16")
    assert op.min_bytes == 2 * 8 * 4096 * 2
