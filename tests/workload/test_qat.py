"""Quantization-aware training: a quantized train phase is the plain training step at the
base dtype plus fake-quant ops (hwsim/workload/qat.py, docs/precision.md)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import hwsim
from hwsim.cli import main
from hwsim.cost import cost_op
from hwsim.errors import ConfigError
from hwsim.workload.graph import SegmentRole, Workload
from hwsim.workload.ops import MatMul
from hwsim.workload.ops_qat import MASK_BYTES, SCALE_BYTES, FakeQuant
from hwsim.workload.qat import fake_quant_saved_bytes

TRAIN = {"phase": "train", "n_layers": 2, "seq_len": 256}
TOKENS = 256  # batch 1 x seq_len
#: Llama-2-7B, one layer's weight GEMMs (k, n): fused QKV, output, fused gate+up, down.
D, F = 4096, 11008
GEMMS = ((D, 3 * D), (D, D), (D, 2 * F), (F, D))


def _train(precision=None, **kw) -> Workload:
    return hwsim.load_workload("llama2-7b", **TRAIN, **kw, **({"precision": precision} if precision else {}))


def _fake_quants(w: Workload) -> list[tuple[int, str, FakeQuant]]:
    """(segment repeats, op name, op) of every fake-quant op of ``w``."""
    return [(seg.repeat, name, op) for p in w.passes for seg in p.segments for name, op in seg.graph.ops()
            if isinstance(op, FakeQuant)]


def _no_dispatch_chip():
    # Without the host's per-kernel issue time an eager step is its ops one after another,
    # so a difference in ops is a difference in time exactly.
    return hwsim.load_arch("h100-sxm").model_copy(update={"host_dispatch_s": 0.0})


def test_qat_graph_is_the_plain_graph_plus_fake_quant():
    """Dropping the fake-quant ops from a w8a8 QAT step leaves the plain step's ops, in order."""
    plain, qat = _train(), _train("w8a8")
    for p_seg, q_seg in zip(plain.passes[0].segments, qat.passes[0].segments, strict=True):
        kept = [(n, op) for n, op in q_seg.graph.ops() if not isinstance(op, FakeQuant)]
        assert kept == list(p_seg.graph.ops()) and q_seg.repeat == p_seg.repeat
    assert qat.params["dtype"] == "bf16" and qat.params["qat"] is True and qat.precision is None
    assert qat.resident_bytes["weights_bytes"] == plain.resident_bytes["weights_bytes"]  # at bf16


def test_qat_costs_plain_plus_exactly_the_fake_quant_ops():
    """QAT time, bytes at every level, FLOP and energy exceed plain training's by the fake-quant ops' own."""
    chip = _no_dispatch_chip()
    plain, qat = _train(), _train("w8a8")
    rp, rq = hwsim.simulate(plain, chip), hwsim.simulate(qat, chip)
    costs = [(rep, cost_op(op, chip)) for rep, _, op in _fake_quants(qat)]
    added_s = sum(rep * c.latency_s for rep, c in costs)
    added_j = sum(rep * (c.compute_energy_j + sum(c.level_energy_j)) for rep, c in costs)
    assert rq.latency_s - rp.latency_s == pytest.approx(added_s, rel=1e-9)
    assert rq.energy_j - rp.energy_j == pytest.approx(added_j + chip.idle_power_w * added_s, rel=1e-9)
    assert rq.flops - rp.flops == pytest.approx(sum(rep * op.flops for rep, _, op in _fake_quants(qat)))
    added_b = sum(rep * op.min_bytes for rep, _, op in _fake_quants(qat))
    for level, n_bytes in rq.bytes_by_level.items():
        assert n_bytes - rp.bytes_by_level[level] == pytest.approx(added_b, rel=1e-9)


def test_fake_quant_count_and_bytes_in_closed_form():
    """w8a8: per layer and weight GEMM one forward and one straight-through op for its input and its
    weights; bytes 3 E b + E + 16 S forward and 2 E b + E backward (E elements, b=2, S scales)."""
    fq = _fake_quants(_train("w8a8"))
    layers = TRAIN["n_layers"]
    fwd = [(rep, op) for rep, _, op in fq if not op.backward]
    bwd = [(rep, op) for rep, _, op in fq if op.backward]
    assert sum(rep for rep, _ in fwd) == sum(rep for rep, _ in bwd) == 2 * len(GEMMS) * layers
    w_elems = layers * sum(k * n for k, n in GEMMS)
    x_elems = layers * TOKENS * sum(k for k, _ in GEMMS)
    scales = layers * (sum(n for _, n in GEMMS) + TOKENS * len(GEMMS))  # per channel; per token
    elems = w_elems + x_elems
    assert sum(rep * op.n_elements for rep, op in fwd) == elems
    assert sum(rep * op.n_scales for rep, op in fwd) == scales
    fwd_bytes = 3 * elems * 2 + elems * MASK_BYTES + 4 * scales * SCALE_BYTES
    assert sum(rep * op.min_bytes for rep, op in fwd) == fwd_bytes
    assert sum(rep * op.min_bytes for rep, op in bwd) == 2 * elems * 2 + elems * MASK_BYTES


def test_w4a16_fake_quantizes_weights_only():
    """w4a16 QAT adds one weight fake-quant per weight GEMM (activations stay bf16), none for inputs."""
    fq = _fake_quants(_train("w4a16"))
    assert {op.tensor for _, _, op in fq} == {"weight"} and {op.target for _, _, op in fq} == {"int4"}
    assert sum(rep for rep, _, op in fq if not op.backward) == len(GEMMS) * TRAIN["n_layers"]


def test_cost_monotone_in_quantized_tensor_classes():
    """plain < weights fake-quantized (w8a16) < weights and inputs (w8a8): time, energy, HBM bytes."""
    chip = hwsim.load_arch("h100-sxm")
    runs = [hwsim.simulate(_train(p), chip) for p in (None, "w8a16", "w8a8")]
    for a, b in zip(runs, runs[1:], strict=False):
        assert b.latency_s > a.latency_s and b.energy_j > a.energy_j
        assert b.bytes_by_level["hbm_bytes"] > a.bytes_by_level["hbm_bytes"]


def test_smaller_weight_groups_mean_more_scales():
    """w4a16: n / ceil(k / group) scales per weight; smaller groups, more scales, bytes and time."""
    chip = _no_dispatch_chip()
    results = []
    for group in (256, 128, 64, 32):
        w = _train({"scheme": "w4a16", "group_size": group})
        fwd = [(rep, op) for rep, _, op in _fake_quants(w) if not op.backward]
        expected = TRAIN["n_layers"] * sum(n * math.ceil(k / group) for k, n in GEMMS)
        assert sum(rep * op.n_scales for rep, op in fwd) == expected
        n_bytes = sum(rep * op.min_bytes for rep, op in fwd)
        results.append((expected, n_bytes, hwsim.simulate(w, chip).latency_s))
    for a, b in zip(results, results[1:], strict=False):
        assert b[0] > a[0] and b[1] > a[1] and b[2] > a[2]


def test_fp8_is_refused_unless_asked_for_as_qat():
    """fp8 training is refused (real fp8 GEMMs not modelled); with qat: true it is fake quant, and said so."""
    with pytest.raises(ConfigError, match="real fp8 training GEMMs .* not modelled"):
        _train("fp8")
    w = _train({"scheme": "fp8", "qat": True})
    assert {op.target for _, _, op in _fake_quants(w)} == {"fp8"}
    assert any("fp8 training read as fake-quant QAT" in line for line in w.warnings)


def test_warnings_say_what_qat_assumes():
    """The workload says GEMMs stay in the training dtype, fake quant is unfused, and what is not modelled."""
    text = " ".join(_train("w8a8").warnings)
    for phrase in ("fake-quantized", "training dtype bf16", "real int8 GEMMs are not modelled", "unfused",
                   "straight-through", "fused kernel", "integer formats in training"):
        assert phrase in text, phrase
    assert not any("fake" in line for line in _train().warnings)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"phase": "decode", "precision": {"scheme": "w8a8", "qat": True}}, "qat: .* phase='train'"),
    ({"phase": "train", "precision": {"qat": True}}, "nothing to fake-quantize"),
    ({"phase": "train", "precision": "fp8-kv"}, "kv_cache: fp8 in training: a training step keeps no KV"),
    ({"phase": "train", "precision": {"scheme": "w8a8", "lm_head": "int8"}}, "lm_head: int8 in training"),
    ({"phase": "train", "precision": {"scheme": "w8a8", "qat": "yes"}}, "qat: expected true or false"),
])
def test_what_qat_does_not_model_is_refused(kwargs, match):
    """qat outside train or with nothing to quantize, a quantized KV cache or LM head in train: refused."""
    with pytest.raises(ConfigError, match=match):
        hwsim.load_workload("llama2-7b", n_layers=2, seq_len=256, **kwargs)


def test_serve_refuses_qat():
    """Serving is inference: a precision with qat is refused, not ignored."""
    with pytest.raises(ConfigError, match="serve: precision: qat"):
        hwsim.serve(hwsim.Requests.offline(2, prompt_len=16, output_len=2), "h100-sxm", model="llama2-7b",
                    precision={"scheme": "w8a8", "qat": True}, n_layers=2)


def test_uniform_train_unchanged():
    """Uniform (and gradients-only) training lowers as before QAT existed (values of commit 3ef0728)."""
    golden = {"weights_bytes": 1333829632.0, "gradients_bytes": 1333829632.0,
              "optimizer_state_bytes": 5335318528.0, "activations_bytes": 84148224.0}
    for prec, grads in ((None, 1), ({"gradients": "fp32"}, 2)):
        w = _train(prec)
        assert (w.n_ops, w.flops) == (61, 835010150400.0) and not _fake_quants(w)
        assert w.resident_bytes == golden | {"gradients_bytes": grads * golden["gradients_bytes"]}
    tp = _train(plan=hwsim.Plan(tp=2), batch=2)
    assert (tp.n_ops, tp.flops, tp.resident_bytes["activations_bytes"]) == (71, 831096741888.0, 125042688.0)


def test_saved_activations_include_fake_quant_outputs_and_masks():
    """QAT keeps each fake-quant output and mask for the backward (with or without a plan), none under
    full recompute."""
    for kw in ({}, {"plan": hwsim.Plan(tp=2), "batch": 2}):
        plain, qat = _train(**kw), _train("w8a8", **kw)
        extra = sum(rep * op.saved_bytes for rep, _, op in _fake_quants(qat))
        assert extra > 0
        assert qat.resident_bytes["activations_bytes"] - plain.resident_bytes["activations_bytes"] == (
            pytest.approx(extra))
    plan = hwsim.Plan(recompute=True)
    assert _train("w8a8", plan=plan).resident_bytes == _train(plan=plan).resident_bytes
    assert fake_quant_saved_bytes(_train("w8a8", plan=plan).passes[0].segments, plan) == 0.0


def test_per_layer_override_keeps_a_layer_unquantized():
    """Layer 0 kept in bf16 under w4a16: only layer 1's weights are fake-quantized."""
    w = _train({"scheme": "w4a16", "layers": {0: "bf16"}})
    layer_segs = [s for s in w.passes[0].segments if s.role is SegmentRole.LAYER]
    assert [s.name for s in layer_segs] == ["layers0-0", "layers1-1"]
    assert [sum(isinstance(op, FakeQuant) for _, op in s.graph.ops()) for s in layer_segs] == [0, len(GEMMS)]


def test_fake_quant_precedes_each_weight_gemm():
    """Every weight GEMM of a w8a8 layer reads its input's and its weights' fake-quant outputs."""
    g = next(s.graph for s in _train("w8a8").passes[0].segments if s.role is SegmentRole.LAYER)
    for name, op in g.ops():
        if isinstance(op, MatMul) and op.b_is_weight:
            assert list(g.predecessors(name)) == [f"{name}_fq_w"]
            assert list(g.predecessors(f"{name}_fq_w")) == [f"{name}_fq_x"]


def test_fake_quant_cost_streams_its_bytes():
    """One fake-quant op moves its bytes at every level, launches 3 kernels (1 backward), and is at
    least as slow as its HBM bytes at full bandwidth."""
    chip = hwsim.load_arch("h100-sxm")
    op = FakeQuant(4096, 4096, 4096, "int8", "bf16", "weight")
    for o, kernels in ((op, 3), (FakeQuant(4096, 4096, 4096, "int8", "bf16", "weight", backward=True), 1)):
        c = cost_op(o, chip)
        assert c.n_kernels == kernels and c.level_bytes("hbm") == pytest.approx(o.min_bytes)
        assert c.latency_s >= o.min_bytes / chip.memory["hbm"].bandwidth_bytes_per_s


def test_qat_is_deterministic():
    """The same QAT step twice gives identical per-op frames."""
    a, b = (hwsim.simulate(_train("w8a8"), "h100-sxm") for _ in range(2))
    assert a.to_frame().equals(b.to_frame()) and a.latency_s == b.latency_s


def test_cli_simulate_train_with_precision():
    """simulate --phase train --precision w8a8 --json equals the API; fp8 is an error line, no traceback."""
    args = ["simulate", "--arch", "h100-sxm", "--model", "llama2-7b", "--phase", "train", "--n-layers", "2",
            "--seq-len", "256"]
    res = CliRunner().invoke(main, [*args, "--precision", "w8a8", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["latency_s"] == pytest.approx(hwsim.simulate(_train("w8a8"), "h100-sxm").latency_s, rel=1e-12)
    assert any("fake-quantized" in line for line in out["warnings"])
    ok = CliRunner().invoke(main, [*args, "--precision", "scheme=fp8,qat=true", "--json"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(main, [*args, "--precision", "fp8"])
    assert bad.exit_code != 0 and "qat: true" in bad.output and "Traceback" not in bad.output
