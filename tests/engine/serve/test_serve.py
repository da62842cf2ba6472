"""The serving loop against closed cases: one request is the request phase, a saturated
static batch is its closed form, every token is produced once, Little's law, saturation,
preemption, determinism, replicas, pools and pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import hwsim
from hwsim.errors import ConfigError

SMALL = {"n_layers": 2}


def _served_tokens_once(result: hwsim.ServeResult) -> None:
    """Every request produced exactly its output tokens, once each, in time order."""
    record = result.record
    counts = np.bincount(record.token_request, minlength=len(result.requests_in))
    assert (counts == result.requests_in.output_len).all()
    assert np.all(np.diff(record.token_time_s) >= 0)


@pytest.mark.parametrize(("arch", "prompt"), [("a100-sxm", 64), ("h100-sxm", 128), ("tpu-v4", 64)])
def test_one_request_is_the_request_phase(arch: str, prompt: int) -> None:
    """A lone request (no queueing) has the request phase's TTFT and TPOT: its prefill,
    then one decode step per further token."""
    n_new = 12
    requests = hwsim.Requests.offline(1, prompt, n_new + 1)
    served = hwsim.serve(requests, arch, model="llama2-7b", **SMALL)
    phase = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="request", prompt_len=prompt,
                                               new_tokens=n_new, n_layers=2), arch)
    row = served.requests.iloc[0]
    assert row["ttft_s"] == pytest.approx(phase.ttft_s, rel=1e-9)
    assert row["tpot_s"] == pytest.approx(phase.tpot_s, rel=1e-9)
    assert row["e2e_s"] == pytest.approx(phase.latency_s, rel=1e-9)
    _served_tokens_once(served)


def test_one_long_request_within_the_token_grid() -> None:
    """A prompt between grid points: the interpolated prefill is within 1 % of exact."""
    requests = hwsim.Requests.offline(1, 1000, 5)
    served = hwsim.serve(requests, "h100-sxm", model="llama2-7b", **SMALL)
    phase = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="request", prompt_len=1000,
                                               new_tokens=4, n_layers=2), "h100-sxm")
    assert served.requests.iloc[0]["ttft_s"] == pytest.approx(phase.ttft_s, rel=0.01)


def test_saturated_static_batches_are_the_closed_form() -> None:
    """Offline, equal lengths, static batching: k full batches each take the request
    phase of one batch (on a chip without a power limit, so batches are identical)."""
    batch, n_batches, prompt, n_new = 8, 3, 64, 10
    requests = hwsim.Requests.offline(batch * n_batches, prompt, n_new + 1)
    served = hwsim.serve(requests, "a100-sxm", model="llama2-7b", scheduler="static",
                         max_num_seqs=batch, **SMALL)
    one = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="request", batch=batch, prompt_len=prompt,
                                             new_tokens=n_new, n_layers=2), "a100-sxm")
    assert served.metrics["duration_s"] == pytest.approx(n_batches * one.latency_s, rel=1e-9)
    assert served.output_tokens_per_s == pytest.approx(batch * (n_new + 1) / one.latency_s, rel=1e-9)
    _served_tokens_once(served)


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "orca", "static"])
def test_every_token_once_and_deterministic(scheduler: str) -> None:
    """Mixed lengths and Poisson arrivals: every token once; the same seed gives the same frames."""
    requests = hwsim.Requests.poisson(60, 40.0, [50, 300, 120, 700], [5, 40, 17, 90], seed=3)
    a = hwsim.serve(requests, "h100-sxm", model="llama2-7b", scheduler=scheduler, **SMALL)
    b = hwsim.serve(requests, "h100-sxm", model="llama2-7b", scheduler=scheduler, **SMALL)
    _served_tokens_once(a)
    assert a.requests.equals(b.requests)
    assert a.iterations.equals(b.iterations)
    assert a.energy_j == b.energy_j > 0


def test_chunked_prefill_keeps_the_token_budget() -> None:
    """Sarathi-style iterations never exceed max_num_batched_tokens new tokens."""
    requests = hwsim.Requests.poisson(40, 50.0, 900, 20, seed=1)
    served = hwsim.serve(requests, "h100-sxm", model="llama2-7b", scheduler="sarathi",
                         max_num_batched_tokens=256, **SMALL)
    it = served.iterations
    assert (it["n_prefill_tokens"] + it["n_decode_tokens"] <= 256).all()
    _served_tokens_once(served)


def test_littles_law_on_a_long_steady_trace() -> None:
    """Mean requests in system = arrival rate x mean E2E, within 2 %."""
    requests = hwsim.Requests.poisson(3000, 60.0, 64, 16, seed=7)
    served = hwsim.serve(requests, "h100-sxm", model="llama2-7b", n_layers=1)
    assert abs(served.metrics["littles_law_rel_diff"]) < 0.02


def test_throughput_saturates_with_rate() -> None:
    """Output tokens/s rises with the arrival rate, then levels off below the offline
    throughput of the same requests."""
    lengths = {"prompt_len": 256, "output_len": 64}
    offline = hwsim.serve(hwsim.Requests.offline(400, **lengths), "h100-sxm", model="llama2-7b", **SMALL)
    rates = [50.0, 400.0, 3000.0, 20000.0]
    tput = [hwsim.serve(hwsim.Requests.poisson(400, r, **lengths, seed=2), "h100-sxm", model="llama2-7b",
                        **SMALL).output_tokens_per_s for r in rates]
    assert tput[0] < tput[1] < tput[2]
    assert tput[3] == pytest.approx(tput[2], rel=0.25)
    assert max(tput) <= offline.output_tokens_per_s * 1.02


def test_preemption_under_a_small_cache() -> None:
    """A cache too small for the batch preempts (recompute or swap), finishes every
    request, and takes longer than a cache that fits."""
    requests = hwsim.Requests.offline(64, 512, 256)
    opts = {"model": "llama2-7b", "n_layers": 2, "max_num_seqs": 64}
    roomy = hwsim.serve(requests, "h100-sxm", **opts)
    # ~0.3 GiB of KV per chip: room for about 12 of the 64 requests at full length.
    tight = hwsim.serve(requests, "h100-sxm", memory_fraction=0.04, **opts)
    assert roomy.metrics["n_preemptions"] == 0
    assert tight.metrics["n_preemptions"] > 0
    assert tight.metrics["duration_s"] > roomy.metrics["duration_s"]
    _served_tokens_once(tight)
    swapped = hwsim.serve(requests, "dgx-h100", preemption="swap", memory_fraction=0.04, **opts)
    assert swapped.metrics["n_preemptions"] > 0
    _served_tokens_once(swapped)


def test_swap_needs_a_host() -> None:
    requests = hwsim.Requests.offline(64, 512, 256)
    with pytest.raises(hwsim.HwsimError, match="host"):
        hwsim.serve(requests, "h100-sxm", model="llama2-7b", n_layers=2, max_num_seqs=64,
                    preemption="swap", memory_fraction=0.04)


def test_replicas_share_the_load() -> None:
    """Two replicas behind a router, each batch-limited, serve twice the offline
    throughput of one."""
    requests = hwsim.Requests.offline(192, 128, 32)  # whole waves of 16 on each replica
    opts = {"model": "llama2-7b", "max_num_seqs": 16, **SMALL}
    one = hwsim.serve(requests, "dgx-h100", replicas=1, **opts)
    two = hwsim.serve(requests, "dgx-h100", replicas=2, router="least_outstanding", **opts)
    assert two.output_tokens_per_s == pytest.approx(2 * one.output_tokens_per_s, rel=0.05)
    assert sorted(two.requests["replica"].unique()) == [0, 1]
    assert any("idle" in w for w in one.warnings)


def test_disaggregated_pools_move_kv() -> None:
    """A prefill pool and a decode pool: every token produced, KV moved once per request,
    first tokens come from the prefill pool."""
    requests = hwsim.Requests.poisson(40, 20.0, 512, 32, seed=5)
    pools = ({"role": "prefill", "replicas": 1, "plan": {"tp": 2}},
             {"role": "decode", "replicas": 1, "plan": {"tp": 2}})
    served = hwsim.serve(requests, "dgx-h100", model="llama2-7b", pools=pools, **SMALL)
    _served_tokens_once(served)
    assert served.energy_breakdown_j["transfer_j"] > 0
    assert served.n_chips == 4


def test_pipelined_replica_serves() -> None:
    """pp=2: batches overlap in the pipeline; every token once."""
    requests = hwsim.Requests.poisson(60, 100.0, 256, 24, seed=4)
    served = hwsim.serve(requests, "dgx-h100", model="llama2-7b", plan=hwsim.Plan(pp=2), n_layers=4)
    _served_tokens_once(served)
    it = served.iterations.sort_values("start_s")
    overlap = (it["start_s"].to_numpy()[1:] < it["end_s"].to_numpy()[:-1]).any()
    assert overlap


def test_prefix_caching_saves_prefill() -> None:
    """Requests sharing a prompt prefix compute it once when prefix caching is on."""
    n = 30
    requests = hwsim.Requests(np.linspace(0, 3, n), np.full(n, 1024), np.full(n, 8), np.zeros(n))
    plain = hwsim.serve(requests, "h100-sxm", model="llama2-7b", **SMALL)
    cached = hwsim.serve(requests, "h100-sxm", model="llama2-7b", prefix_caching=True, **SMALL)
    assert cached.metrics["ttft_mean_s"] < plain.metrics["ttft_mean_s"]
    _served_tokens_once(cached)


def test_bad_input_is_refused_with_the_numbers() -> None:
    with pytest.raises(ConfigError, match="exceed llama2-7b's context of 4096"):
        hwsim.serve(hwsim.Requests.offline(2, 100_000, 100_000), "h100-sxm", model="llama2-7b")
    with pytest.raises(ConfigError, match=r"needs 12500 KV blocks of 16 tokens; the cache holds \d+"):
        hwsim.serve(hwsim.Requests.offline(2, 100_000, 100_000), "h100-sxm", model="llama2-7b",
                    max_model_len=200_000)
    with pytest.raises(ConfigError, match="do not fit one vllm iteration of max_num_batched_tokens=512"):
        hwsim.serve(hwsim.Requests.offline(2, 1000, 10), "h100-sxm", max_num_batched_tokens=512)
    with pytest.raises(ConfigError, match="scheduler"):
        hwsim.serve(hwsim.Requests.offline(2, 10, 10), "h100-sxm", scheduler="fifo")
    with pytest.raises(ConfigError, match="max_num_seqz"):
        hwsim.serve(hwsim.Requests.offline(2, 10, 10), "h100-sxm", max_num_seqz=3)
    with pytest.raises(ConfigError, match="max_num_seqs"):
        hwsim.serve(hwsim.Requests.offline(2, 10, 10), "h100-sxm", max_num_seqs=True)
    with pytest.raises(ConfigError, match="encoder"):
        hwsim.serve(hwsim.Requests.offline(2, 10, 10), "h100-sxm", model="bert-large")


@pytest.mark.parametrize(("arch", "kw"), [("h100-sxm", {}), ("dgx-h100", {"plan": hwsim.Plan(tp=8)})])
def test_compiled_pass_equals_op_by_op(arch: str, kw: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving's compiled pass (only attention and its successor evaluated per iteration,
    spans and the power walk reused) gives the op-by-op evaluation's numbers."""
    from hwsim.engine import iteration

    requests = hwsim.Requests.poisson(120, 40.0, prompt_len=stats.randint(64, 700),
                                       output_len=stats.randint(8, 90), seed=3)

    def run() -> dict[str, float]:
        served = hwsim.serve(requests, arch, model="llama2-7b", n_layers=6, **kw)
        return {k: float(v) for k, v in served.metrics.items() if isinstance(v, (int, float, np.floating))}

    compiled = run()
    monkeypatch.setattr(iteration, "compile_pass", lambda *args, **kwargs: None)
    op_by_op = run()
    assert compiled.keys() == op_by_op.keys()
    for key, value in op_by_op.items():
        assert compiled[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
