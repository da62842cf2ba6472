"""Folding repeated layers is exact: fold=True and fold=False give the same run."""

from __future__ import annotations

import math

import pytest

import hwsim

ARCHS = ("h100-sxm", "tpu-v4")
WORKLOADS = {
    "decode-8": dict(phase="decode", batch=4, context_len=512, n_layers=8),
    "decode-32": dict(phase="decode", batch=4, context_len=512, n_layers=32),
    "prefill-6": dict(phase="prefill", batch=1, prompt_len=256, n_layers=6),
    "train-6": dict(phase="train", batch=1, seq_len=256, n_layers=6),
    "request-5": dict(phase="request", batch=1, prompt_len=64, new_tokens=3, n_layers=5),
}
CASES = [pytest.param(arch, kw, id=f"{arch}-{name}") for arch in ARCHS for name, kw in WORKLOADS.items()]

REL = 1e-9
ABS_TIME_S = 1e-12


def _pair(arch: str, kw: dict[str, object]) -> tuple[hwsim.Result, hwsim.Result]:
    workload = hwsim.load_workload("llama2-7b", **kw)
    return hwsim.simulate(workload, arch, fold=True), hwsim.simulate(workload, arch, fold=False)


@pytest.mark.parametrize(("arch", "kw"), CASES)
def test_fold_gives_same_totals(arch: str, kw: dict[str, object]) -> None:
    """Folded and unfolded runs agree on latency, energy (and its parts), bytes and FLOPs."""
    folded, full = _pair(arch, kw)
    assert folded.latency_s == pytest.approx(full.latency_s, rel=REL)
    assert folded.energy_j == pytest.approx(full.energy_j, rel=REL)
    assert folded.flops == pytest.approx(full.flops, rel=REL)
    assert folded.energy_breakdown_j.keys() == full.energy_breakdown_j.keys()
    for key, value in full.energy_breakdown_j.items():
        assert folded.energy_breakdown_j[key] == pytest.approx(value, rel=REL), key
    assert folded.bytes_by_level.keys() == full.bytes_by_level.keys()
    for key, value in full.bytes_by_level.items():
        assert folded.bytes_by_level[key] == pytest.approx(value, rel=REL), key


@pytest.mark.parametrize(("arch", "kw"), CASES)
def test_fold_gives_same_frame_rows(arch: str, kw: dict[str, object]) -> None:
    """Folded and unfolded frames have the same rows in the same order, times within 1 ps."""
    folded, full = (r.to_frame() for r in _pair(arch, kw))
    assert len(folded) == len(full)
    for col in ("pass", "segment", "layer", "op", "kind", "bound"):
        assert folded[col].tolist() == full[col].tolist(), col
    for col in ("start_s", "end_s"):
        worst = (folded[col] - full[col]).abs().max()
        assert worst <= ABS_TIME_S, f"{col} differs by up to {worst:.3g} s"
    numeric = ["flops", "energy_j", *(c for c in full.columns if c.endswith("_bytes"))]
    for col in numeric:
        assert folded[col].tolist() == pytest.approx(full[col].tolist(), rel=REL, abs=1e-6), col


@pytest.mark.parametrize("arch", ARCHS)
def test_fold_gives_same_ttft_and_tpot(arch: str) -> None:
    """A folded request reports the same time to first token and time per output token."""
    folded, full = _pair(arch, WORKLOADS["request-5"])
    assert folded.ttft_s is not None and full.ttft_s is not None
    assert folded.tpot_s is not None and full.tpot_s is not None
    assert folded.ttft_s == pytest.approx(full.ttft_s, rel=REL)
    assert folded.tpot_s == pytest.approx(full.tpot_s, rel=REL)


@pytest.mark.parametrize("arch", ARCHS)
def test_fold_frame_has_one_row_per_op_instance(arch: str) -> None:
    """A folded 32-layer decode still lists every layer: one frame row per expanded op."""
    workload = hwsim.load_workload("llama2-7b", **WORKLOADS["decode-32"])
    frame = hwsim.simulate(workload, arch).to_frame()
    assert len(frame) == workload.n_ops
    layers = frame[frame["segment"] == "layer"]["layer"]
    assert sorted(set(layers)) == list(range(32))
    per_layer = layers.value_counts()
    assert per_layer.nunique() == 1


@pytest.mark.parametrize("arch", ARCHS)
def test_folded_layers_are_periodic(arch: str) -> None:
    """In a folded run every layer after the first starts one constant period after the last."""
    workload = hwsim.load_workload("llama2-7b", **WORKLOADS["decode-32"])
    frame = hwsim.simulate(workload, arch).to_frame()
    layer_start = frame[frame["segment"] == "layer"].groupby("layer")["start_s"].min()
    gaps = layer_start.diff().dropna().to_numpy()[1:]  # layer 0 may differ (it follows the embedding)
    assert all(math.isclose(g, gaps[0], rel_tol=1e-9) for g in gaps)
