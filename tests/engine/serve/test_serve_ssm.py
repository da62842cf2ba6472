"""Serving state-space and hybrid models: the scan costed per iteration, the fixed state
counted against the KV cache, and whole runs that finish."""

from __future__ import annotations

import numpy as np
import pytest

import hwsim
from hwsim.caches import CostCache
from hwsim.engine.iteration import ReplicaModel
from hwsim.engine.serve.kv import KVLayout
from hwsim.engine.serve.run import kv_layout
from hwsim.workload.plan import Plan


@pytest.fixture(scope="module")
def h100() -> hwsim.Chip:
    return hwsim.load_arch("h100-sxm")


def _model(name: str, chip: hwsim.Chip, n_layers: int, plan: Plan | None = None) -> ReplicaModel:
    spec = hwsim.load_model_spec(name).model_copy(update={"num_hidden_layers": n_layers})
    return ReplicaModel(spec, chip, plan or Plan(), CostCache(chip))


def test_iteration_equals_the_uniform_workload(h100: hwsim.Chip) -> None:
    """A uniform decode batch costs in the serving engine what ``simulate`` gives for the
    same decode step (the scan's per-iteration cost is the uniform op's)."""
    model = _model("mamba-2.8b", h100, 4)
    it = model.run(np.ones(8, dtype=np.int64), np.full(8, 513), 8)
    w = hwsim.load_workload("mamba-2.8b", phase="decode", batch=8, context_len=512, n_layers=4)
    assert it.latency_s == pytest.approx(hwsim.simulate(w, h100).latency_s, rel=1e-6)


def test_scan_is_costed_per_iteration(h100: hwsim.Chip) -> None:
    """A pure Mamba decode iteration does not depend on the requests' lengths, but each
    more request adds its state's traffic; a first prefill chunk reads no state."""
    model = _model("mamba-2.8b", h100, 4)
    ones = np.ones(4, dtype=np.int64)
    short, long = model.run(ones, np.full(4, 10), 4), model.run(ones, np.full(4, 50_000), 4)
    assert short.latency_s == pytest.approx(long.latency_s, rel=1e-12)
    more = model.run(np.ones(64, dtype=np.int64), np.full(64, 10), 64)
    hbm = h100.home_level
    assert more.level_bytes[hbm] > short.level_bytes[hbm]
    first = model.run(np.array([256]), np.array([256]), 1)
    later = model.run(np.array([256]), np.array([512]), 1)
    assert later.level_bytes[hbm] > first.level_bytes[hbm]


def test_kv_layout_counts_the_state(h100: hwsim.Chip) -> None:
    """Mamba: one block per request, of its whole state; Jamba: blocks of its attention
    layers' tokens plus the Mamba states, split over tp."""
    mamba = kv_layout(_model("mamba-2.8b", h100, 64), 16)
    state = 64 * (3 + 16) * 5120 * 2
    assert mamba.growing_bytes_per_token == 0 and mamba.state_bytes == state == mamba.block_bytes
    assert mamba.blocks(1) == mamba.blocks(100_000) == 1 and mamba.blocks(0) == 0
    system = hwsim.load_system("dgx-h100")
    jamba = kv_layout(_model("jamba-v0.1", system.chip, 32, Plan(tp=2)), 16)
    assert jamba.growing_bytes_per_token == 4 * 2 * 4 * 128 * 2
    assert jamba.state_bytes == 28 * (3 + 16) * 4096 * 2
    per_block = 16 * jamba.growing_bytes_per_token
    assert jamba.blocks(160) == int(np.ceil((10 * per_block + jamba.state_bytes) / per_block))


def test_layout_blocks_vectorised() -> None:
    """Blocks of many requests at once agree with one at a time."""
    layout = KVLayout(16, 100.0, ((64, 50.0),), state_bytes=5000.0)
    tokens = np.array([0, 1, 16, 17, 200, 5000])
    assert layout.blocks(tokens).tolist() == [layout.blocks(int(t)) for t in tokens]


@pytest.mark.parametrize(("model", "arch", "kw"), [
    ("mamba-2.8b", "h100-sxm", {}),
    ("jamba-v0.1", "h100-sxm", {"n_layers": 8}),
])
def test_serving_runs_finish(model: str, arch: str, kw: dict) -> None:
    """Poisson traffic on Mamba and on a slice of Jamba completes with finite metrics,
    and the state-space approximation is reported."""
    requests = hwsim.Requests.poisson(24, 10.0, 300, 16, seed=3)
    result = hwsim.serve(requests, arch, model=model, **kw)
    summary = result.summary()
    assert summary["n_completed"] == 24
    for key in ("ttft_mean_s", "tpot_mean_s", "output_tokens_per_s", "energy_j"):
        assert np.isfinite(summary[key]) and summary[key] > 0
    assert any("state-space layers" in w for w in summary["warnings"])
    attention_note = any("attention of a batch" in w for w in summary["warnings"])
    assert attention_note == (model == "jamba-v0.1")
