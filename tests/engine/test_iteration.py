"""The iteration engine (replica processes over memoised iteration costs) against the
op-by-op SimPy schedule it replaced, and the direct chain evaluation against SimPy."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import hwsim
from hwsim.caches import CostCache
from hwsim.cost.attention import attention_cost
from hwsim.cost.attention_batch import attention_batch_cost
from hwsim.engine.iteration import GRID_EXACT_TOKENS, ReplicaModel, grid_bracket
from hwsim.engine.schedule import run_schedule
from hwsim.workload.ops import Attention
from hwsim.workload.plan import Plan

ARCHS = ("h100-sxm", "h200-sxm", "a100-sxm", "tpu-v4", "tpu-v5e", "wse2", "systolic-128")
WORKLOADS = (
    ("llama2-7b", {"phase": "decode", "batch": 8, "context_len": 2048}),
    ("llama2-7b", {"phase": "prefill", "batch": 2, "prompt_len": 1024}),
    ("llama2-7b", {"phase": "request", "batch": 2, "prompt_len": 128, "new_tokens": 6}),
    ("mixtral-8x7b", {"phase": "decode", "batch": 4, "context_len": 1024}),
    ("gemma2-9b", {"phase": "decode", "batch": 2, "context_len": 8192, "n_layers": 4}),
    ("gpt-j-6b", {"phase": "prefill", "batch": 1, "prompt_len": 512}),
    ("deepseek-v3", {"phase": "decode", "batch": 4, "context_len": 1024, "n_layers": 4}),
    ("deepseek-v3", {"phase": "prefill", "batch": 1, "prompt_len": 512, "n_layers": 4}),
)


@functools.cache
def chip(name: str) -> hwsim.Chip:
    return hwsim.load_arch(name)


def _workload(model: str, kw: dict) -> hwsim.Workload:
    kw = {"n_layers": 3, **kw}
    return hwsim.load_workload(model, **kw)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("model", "kw"), WORKLOADS, ids=[f"{m}-{k['phase']}" for m, k in WORKLOADS])
def test_engine_equals_op_schedule(arch: str, model: str, kw: dict) -> None:
    """Latency, energy, bytes and FLOP of the iteration engine equal the unfolded op-by-op
    schedule's (``fold=False`` takes the old path) to float rounding."""
    workload = _workload(model, kw)
    try:
        new = hwsim.simulate(workload, chip(arch))
    except hwsim.MappingError as exc:  # e.g. DeepSeek's MoE layers on a 16 GB chip
        pytest.skip(str(exc))
    old = hwsim.simulate(workload, chip(arch), fold=False)
    assert new.latency_s == pytest.approx(old.latency_s, rel=1e-9)
    assert new.energy_j == pytest.approx(old.energy_j, rel=1e-9)
    assert new.flops == pytest.approx(old.flops, rel=1e-12)
    for key, value in old.bytes_by_level.items():
        assert new.bytes_by_level[key] == pytest.approx(value, rel=1e-9)
    if old.ttft_s is not None:
        assert new.ttft_s == pytest.approx(old.ttft_s, rel=1e-9)
        assert new.tpot_s == pytest.approx(old.tpot_s, rel=1e-9)
    assert new.bound == old.bound


@pytest.mark.parametrize(("plan", "kw"), [
    (Plan(tp=2), {"phase": "decode", "batch": 8, "context_len": 1024}),
    (Plan(tp=4, dp=2), {"phase": "prefill", "batch": 4, "prompt_len": 512}),
    (Plan(tp=2, dp=2), {"phase": "request", "batch": 4, "prompt_len": 128, "new_tokens": 4}),
])
def test_engine_equals_op_schedule_under_plans(plan: Plan, kw: dict) -> None:
    """Tensor- and data-parallel plans: the same totals both ways."""
    workload = _workload("llama2-13b", kw)
    new = hwsim.simulate(workload, "dgx-h100", plan=plan)
    old = hwsim.simulate(workload, "dgx-h100", plan=plan, fold=False)
    assert new.latency_s == pytest.approx(old.latency_s, rel=1e-9)
    assert new.energy_j == pytest.approx(old.energy_j, rel=1e-9)


def test_engine_equals_op_schedule_streaming_weights() -> None:
    """Weights streamed from an external store (prefetched collectives: SimPy processes
    inside an iteration) cost the same both ways."""
    workload = _workload("llama2-13b", {"phase": "decode", "batch": 1, "context_len": 512})
    plan = Plan(offload=("weights",))
    new = hwsim.simulate(workload, "cs2-weight-streaming", plan=plan)
    old = hwsim.simulate(workload, "cs2-weight-streaming", plan=plan, fold=False)
    assert new.latency_s == pytest.approx(old.latency_s, rel=1e-9)
    assert new.energy_j == pytest.approx(old.energy_j, rel=1e-9)


def test_pipeline_close_to_the_stage_play() -> None:
    """pp=2 with micro-batches: stages as resources agree with the old stage-time play
    within 1 % (each stage now launches its own graph and keeps its own power bucket)."""
    workload = _workload("llama2-13b", {"phase": "prefill", "batch": 8, "prompt_len": 512, "n_layers": 8})
    plan = Plan(tp=2, pp=2, microbatches=4)
    new = hwsim.simulate(workload, "dgx-h100", plan=plan)
    old = hwsim.simulate(workload, "dgx-h100", plan=plan, fold=False)
    assert new.latency_s == pytest.approx(old.latency_s, rel=0.01)
    assert new.energy_j == pytest.approx(old.energy_j, rel=0.01)


@pytest.mark.parametrize("arch", ("h100-sxm", "tpu-v4", "wse2"))
def test_direct_chain_equals_simpy(arch: str) -> None:
    """The recurrence of engine/chain.py reproduces the SimPy op processes bit for bit."""
    workload = _workload("llama2-7b", {"phase": "request", "batch": 2, "prompt_len": 256, "new_tokens": 3})
    cache = CostCache(chip(arch))
    direct = run_schedule(workload, chip(arch), cache, events=False)
    events = run_schedule(workload, chip(arch), cache, events=True)
    assert direct.latency_s == events.latency_s
    for a, b in zip(direct.records, events.records, strict=True):
        assert (a.start_s, a.end_s, a.prefetched_bytes, a.bound) == (b.start_s, b.end_s, b.prefetched_bytes,
                                                                     b.bound)


def _template(**kw: object) -> Attention:
    base = {"batch": 1, "n_heads": 32, "n_kv_heads": 8, "q_len": 1, "kv_len": 1, "head_dim": 128}
    return Attention(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{}, {"window": 512}, {"chunk": 1024}, {"softcap": True}])
def test_mixed_attention_sums_its_requests(kw: dict) -> None:
    """A varlen kernel's FLOP and bytes are the sums of each request's own kernel."""
    h100 = chip("h100-sxm")
    template = _template(**kw)
    q = np.array([1, 1, 1, 300, 64])
    k = np.array([100, 2000, 777, 1300, 64])
    mixed = attention_batch_cost(h100, template, q, k)
    alone = [attention_cost(h100, Attention(**{**template.__dict__, "q_len": int(a), "kv_len": int(b)}))
             for a, b in zip(q, k, strict=True)]
    assert mixed.flops == pytest.approx(sum(c.flops for c in alone), rel=1e-12)
    assert mixed.traffic[-1].bytes == pytest.approx(sum(c.traffic[-1].bytes for c in alone), rel=1e-12)
    # One kernel over all requests takes at least the longest request alone, and no
    # longer than running them one after another.
    slowest = max(c.compute_s for c in alone)
    assert slowest * (1 - 1e-9) <= mixed.compute_s <= sum(c.compute_s for c in alone) * (1 + 1e-9)


def test_mixed_attention_of_equal_requests_is_the_uniform_kernel() -> None:
    """Requests of equal lengths are the uniform kernel, costed exactly."""
    h100 = chip("h100-sxm")
    template = _template()
    mixed = attention_batch_cost(h100, template, np.full(16, 1), np.full(16, 4096))
    assert mixed == attention_cost(h100, _template(batch=16, kv_len=4096))


def test_mixed_attention_grows_with_keys() -> None:
    """More cached keys for one request never make the kernel faster or cheaper."""
    h100 = chip("h100-sxm")
    template = _template()
    q = np.ones(64, dtype=np.int64)
    k = np.linspace(100, 8000, 64).astype(np.int64)
    base = attention_batch_cost(h100, template, q, k)
    k2 = k.copy()
    k2[10] += 3000
    more = attention_batch_cost(h100, template, q, k2)
    assert more.compute_s >= base.compute_s * (1 - 1e-12)
    assert more.traffic[-1].bytes > base.traffic[-1].bytes


def test_token_grid_brackets() -> None:
    """Token counts up to the exact limit and on the grid are exact; others fall between
    two grid points 2**(1/16) apart (4.4 %, plus rounding)."""
    assert grid_bracket(GRID_EXACT_TOKENS) == (GRID_EXACT_TOKENS, GRID_EXACT_TOKENS, 0.0)
    for t in (65, 100, 1000, 2047, 5000, 100_000):
        lo, hi, w = grid_bracket(t)
        assert lo <= t < hi and 0.0 <= w < 1.0
        assert hi / lo <= 2 ** (1 / 16) + 2 / lo  # the grid ratio, plus rounding to whole tokens
        assert (t - lo) / (hi - lo) == w


def test_token_grid_interpolation_error_small() -> None:
    """Interpolated iterations stay within 1 % of costing the exact token count."""
    h100 = chip("h100-sxm")
    spec = hwsim.load_model_spec("llama2-7b").model_copy(update={"num_hidden_layers": 4})
    cache = CostCache(h100)
    exact = ReplicaModel(spec, h100, Plan(), cache)
    grid = ReplicaModel(spec, h100, Plan(), cache, token_grid=True)
    for t in (70, 150, 333, 1000, 3000):
        q = np.array([t - 20, *([1] * 20)])
        k = np.array([t - 20, *range(500, 520)])
        a, b = exact.run(q, k, 21), grid.run(q, k, 21)
        assert b.latency_s == pytest.approx(a.latency_s, rel=0.01)
        assert b.dynamic_j == pytest.approx(a.dynamic_j, rel=0.01)
