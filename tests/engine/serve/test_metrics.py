"""Serving metrics: a hand-built trace gives hand-computed numbers; Little's law and the
M/D/1 waiting time hold on a synthetic queue; goodput counts what meets the SLO."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hwsim.engine.serve.metrics import (
    SLO,
    EngineRecord,
    _stable_order,
    average_power_w,
    energy_per_output_token_j,
    iteration_means,
    littles_law,
    request_frame,
    summarize,
    usd_per_million_tokens,
)
from hwsim.engine.serve.requests import Requests
from hwsim.errors import ConfigError

# Three requests: r0 (3 tokens), r1 (1 token), r2 (4 tokens); times in seconds.
REQUESTS = Requests([0.0, 1.0, 1.5], [10, 20, 5], [3, 1, 4])
TOKENS = [(0.5, 0), (0.7, 0), (1.0, 0), (1.6, 1), (2.0, 2), (2.1, 2), (2.5, 2), (2.6, 2)]
ITERATIONS = pd.DataFrame({
    "start_s": [0.1, 0.5, 1.5], "end_s": [0.5, 1.0, 2.6], "n_prefill_tokens": [10, 0, 25],
    "n_decode_tokens": [0, 1, 1], "batch_size": [1, 1, 2], "queue_len": [0, 1, 0],
    "kv_blocks_used": [2, 3, 6], "kv_blocks_total": [10, 10, 10], "energy_j": [1.0, 2.0, 3.0],
})


def _record(iterations: pd.DataFrame | None = ITERATIONS) -> EngineRecord:
    times, owners = zip(*TOKENS, strict=True)
    return EngineRecord.from_tokens([0.1, 1.2, 1.5], [0, 2, 0], list(owners), list(times), iterations)


def test_request_frame_hand_computed() -> None:
    """Queueing, TTFT, E2E, TPOT and worst ITL per request equal the hand values."""
    frame = request_frame(REQUESTS, _record())
    assert list(frame.columns) == ["request", "arrival_s", "prompt_len", "output_len", "queue_s",
                                   "ttft_s", "tpot_s", "e2e_s", "itl_max_s", "n_preemptions",
                                   "completed", "met_slo"]
    np.testing.assert_allclose(frame["queue_s"], [0.1, 0.2, 0.0], atol=1e-12)
    np.testing.assert_allclose(frame["ttft_s"], [0.5, 0.6, 0.5], atol=1e-12)
    np.testing.assert_allclose(frame["e2e_s"], [1.0, 0.6, 1.1], atol=1e-12)
    # TPOT = (E2E - TTFT) / (output_len - 1); undefined for the one-token request.
    np.testing.assert_allclose(frame["tpot_s"], [0.25, np.nan, 0.2], atol=1e-12)
    np.testing.assert_allclose(frame["itl_max_s"], [0.3, np.nan, 0.4], atol=1e-12)
    assert list(frame["n_preemptions"]) == [0, 2, 0]
    assert frame["completed"].all() and frame["met_slo"].all()


def test_summary_hand_computed() -> None:
    """Percentiles, throughput over first arrival to last completion, iteration means."""
    s = summarize(REQUESTS, _record(), n_chips=8, usd_per_chip_hour=2.0)
    assert s["n_requests"] == 3 and s["n_completed"] == 3 and s["n_preemptions"] == 2
    assert s["ttft_mean_s"] == pytest.approx(1.6 / 3)
    assert s["ttft_p50_s"] == pytest.approx(0.5)
    assert s["ttft_p90_s"] == pytest.approx(0.58)  # linear: 0.5 + 0.8 * (0.6 - 0.5)
    assert s["tpot_mean_s"] == pytest.approx(0.225)  # over the two requests that decode
    # ITL over all five gaps (0.2, 0.3, 0.1, 0.4, 0.1), token-weighted.
    assert s["itl_mean_s"] == pytest.approx(0.22)
    assert s["itl_p50_s"] == pytest.approx(0.2)
    assert s["e2e_p99_s"] == pytest.approx(1.0 + 0.98 * 0.1)
    assert s["queue_mean_s"] == pytest.approx(0.1)
    assert s["duration_s"] == pytest.approx(2.6)
    assert s["output_tokens_per_s"] == pytest.approx(8 / 2.6)
    assert s["total_tokens_per_s"] == pytest.approx(43 / 2.6)
    assert s["requests_per_s"] == pytest.approx(3 / 2.6)
    # Iterations: durations 0.4, 0.5, 1.1 s (busy 2.0 s of 2.6 s).
    assert s["busy_s"] == pytest.approx(2.0) and s["busy_fraction"] == pytest.approx(2.0 / 2.6)
    assert s["batch_size_mean"] == pytest.approx(1.55)
    assert s["queue_len_mean"] == pytest.approx(0.25)
    assert s["kv_blocks_used_mean"] == pytest.approx(4.45)
    assert s["kv_usage_mean"] == pytest.approx(0.445) and s["kv_usage_max"] == pytest.approx(0.6)
    assert s["energy_j"] == pytest.approx(6.0)
    assert s["energy_per_output_token_j"] == pytest.approx(0.75)
    assert s["average_power_w"] == pytest.approx(6.0 / 2.6)
    assert s["usd_per_million_output_tokens"] == pytest.approx(8 * 2.0 * 2.6 / 3600 / 8 * 1e6)
    assert s["usd_per_million_total_tokens"] == pytest.approx(8 * 2.0 * 2.6 / 3600 / 43 * 1e6)


def test_littles_law_hand_computed() -> None:
    """Step-function area equals the sum of E2E; arrival rate is (n - 1) / span."""
    s = summarize(REQUESTS, _record())
    assert s["mean_in_system"] == pytest.approx(2.7 / 2.6)
    assert s["arrival_rate_x_mean_e2e"] == pytest.approx((2 / 1.5) * 0.9)
    assert s["littles_law_rel_diff"] == pytest.approx((2.7 / 2.6 - 1.2) / 1.2)


def test_every_key_carries_a_unit_or_is_a_count() -> None:
    """Summary keys end in a unit (_s, _per_s, _j, _w, usd...) or are counts/fractions."""
    s = summarize(REQUESTS, _record(), SLO(ttft_s=1.0), n_chips=1, usd_per_chip_hour=1.0)
    unitless = {"n_requests", "n_completed", "n_preemptions", "n_iterations", "mean_in_system",
                "arrival_rate_x_mean_e2e", "littles_law_rel_diff", "batch_size_mean",
                "queue_len_mean", "kv_blocks_used_mean", "kv_usage_mean", "kv_usage_max",
                "busy_fraction", "slo_attainment", "slo_met"}
    units = ("_s", "_per_s", "_j", "_w", "_tokens")
    for key in s:
        assert key in unitless or key.endswith(units), key


@pytest.mark.parametrize(("slo", "good", "met"), [
    (SLO(ttft_s=0.55, tpot_s=0.22), [False, False, True], False),
    (SLO(ttft_s=0.7), [True, True, True], True),
    (SLO(tpot_s=0.21), [False, True, True], False),  # r1 has no TPOT: the limit holds
    (SLO(e2e_s=1.05, percentile=50), [True, True, False], True),
])
def test_goodput_counts_requests_meeting_every_limit(slo: SLO, good: list[bool], met: bool) -> None:
    """met_slo per request, goodput in requests/s and output tokens/s, and the run-level
    percentile test."""
    frame = request_frame(REQUESTS, _record(), slo)
    assert list(frame["met_slo"]) == good
    s = summarize(REQUESTS, _record(), slo)
    tokens = sum(n for n, ok in zip(REQUESTS.output_len, good, strict=True) if ok)
    assert s["goodput_requests_per_s"] == pytest.approx(sum(good) / 2.6)
    assert s["goodput_output_tokens_per_s"] == pytest.approx(tokens / 2.6)
    assert s["slo_attainment"] == pytest.approx(sum(good) / 3)
    assert s["slo_met"] == float(met)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"ttft_s": 0.0}, r"SLO: ttft_s: must be a finite number of seconds > 0, got 0.0"),
    ({"tpot_s": -0.1}, r"SLO: tpot_s: must be a finite number of seconds > 0"),
    ({"e2e_s": math.inf}, r"SLO: e2e_s: must be a finite number of seconds > 0, got inf"),
    ({"percentile": 0.0}, r"SLO: percentile: must be in \(0, 100\]"),
    ({"percentile": 101}, r"SLO: percentile: must be in \(0, 100\]"),
])
def test_slo_refuses_impossible_limits(kwargs: dict[str, float], pattern: str) -> None:
    """Non-positive or non-finite limits and percentiles outside (0, 100] are refused."""
    with pytest.raises(ConfigError, match=pattern):
        SLO(**kwargs)


def test_percentiles_of_constant_inputs_are_the_constant() -> None:
    """Every request with the same latencies: each percentile equals the value exactly."""
    n, out = 50, 5
    r = Requests.poisson(n, 2.0, 100, out, seed=1)
    owners = np.repeat(np.arange(n), out)
    times = r.arrival_s[owners] + 0.25 + 0.125 * np.tile(np.arange(out), n)
    order = np.argsort(times, kind="stable")
    s = summarize(r, EngineRecord.from_tokens(r.arrival_s + 0.0625, np.zeros(n, int),
                                              owners[order], times[order]))
    for prefix, value in (("ttft", 0.25), ("tpot", 0.125), ("itl", 0.125), ("e2e", 0.75),
                          ("queue", 0.0625)):
        for stat in ("mean", "p50", "p90", "p99"):
            assert s[f"{prefix}_{stat}_s"] == pytest.approx(value, abs=1e-12), (prefix, stat)


def _md1(n: int, rate: float, service_s: float, seed: int) -> tuple[Requests, EngineRecord]:
    """A single FIFO server with deterministic service: each request makes two tokens,
    half-way through and at the end of its service."""
    r = Requests.poisson(n, rate, 16, 2, seed=seed)
    idx = np.arange(n)
    # Lindley recursion in closed form: finish_i = (i + 1) D + max_{j <= i} (a_j - j D).
    finish = (idx + 1) * service_s + np.maximum.accumulate(r.arrival_s - idx * service_s)
    start = finish - service_s
    times = np.column_stack([start + service_s / 2, finish]).reshape(-1)
    owners = np.repeat(idx, 2)
    return r, EngineRecord.from_tokens(start, np.zeros(n, int), owners, times)


def test_littles_law_and_md1_waiting_time_on_a_synthetic_queue() -> None:
    """M/D/1 at load 0.8: Little's law within 2 %, and the mean time in system within 5 %
    of Pollaczek-Khinchine, D + rho D / (2 (1 - rho)) = 3 D."""
    rate, service = 0.8, 1.0
    r, record = _md1(100_000, rate, service, seed=2)
    s = summarize(r, record)
    assert abs(s["littles_law_rel_diff"]) < 0.02
    rho = rate * service
    assert s["e2e_mean_s"] == pytest.approx(service + rho * service / (2 * (1 - rho)), rel=0.05)
    assert s["queue_mean_s"] == pytest.approx(rho * service / (2 * (1 - rho)), rel=0.06)
    assert s["tpot_p99_s"] == pytest.approx(service / 2)  # (E2E - TTFT) / 1, every request


def test_littles_law_function_on_a_step() -> None:
    """Two overlapping requests on [0, 4], 3 s each: area 6, so 1.5 in system on average."""
    out = littles_law(np.array([0.0, 1.0]), np.array([3.0, 4.0]), arrival_rate_per_s=0.5)
    assert out["mean_in_system"] == pytest.approx(1.5)
    assert out["arrival_rate_x_mean_e2e"] == pytest.approx(1.5)
    assert out["littles_law_rel_diff"] == pytest.approx(0.0)


def test_unfinished_requests_are_counted_but_not_measured() -> None:
    """A request without a finish is not completed, does not meet the SLO and is left out
    of the latency statistics and throughput."""
    times, owners = zip(*TOKENS[:4], strict=True)  # r2 never produced a token
    record = EngineRecord.from_tokens([0.1, 1.2, np.nan], [0, 0, 0], list(owners), list(times))
    frame = request_frame(REQUESTS, record, SLO(ttft_s=10))
    assert list(frame["completed"]) == [True, True, False]
    assert list(frame["met_slo"]) == [True, True, False]
    s = summarize(REQUESTS, record, SLO(ttft_s=10))
    assert s["n_completed"] == 2 and s["duration_s"] == pytest.approx(1.6)
    assert s["output_tokens_per_s"] == pytest.approx(4 / 1.6)
    assert s["slo_attainment"] == pytest.approx(2 / 3)


def test_every_token_once_is_checked() -> None:
    """A completed request with too few or too many token events is an engine error."""
    times, owners = zip(*TOKENS, strict=True)
    record = EngineRecord([0.1, 1.2, 1.5], [0.5, 1.6, 2.0], [1.0, 1.6, 2.6], [0, 0, 0],
                          list(owners)[:-1], list(times)[:-1])
    with pytest.raises(ValueError, match="request 2 completed with 3 token events for output_len 4"):
        request_frame(REQUESTS, record)


@pytest.mark.parametrize(("change", "pattern"), [
    ({"token_time_s": [0.5, 0.4]}, "time order"),
    ({"token_request": [0, 3]}, "must index requests"),
    ({"finish_s": [1.0, 2.0]}, "one entry per request"),
])
def test_engine_record_is_validated(change: dict[str, list[float]], pattern: str) -> None:
    """Misshapen or out-of-order engine records are refused at construction."""
    fields = {"first_scheduled_s": [0.0, 0.0, 0.0], "first_token_s": [0.5, 0.5, 0.5],
              "finish_s": [1.0, 1.0, 1.0], "n_preemptions": [0, 0, 0],
              "token_request": [0, 1], "token_time_s": [0.5, 0.6], **change}
    with pytest.raises(ValueError, match=pattern):
        EngineRecord(**{k: np.asarray(v) for k, v in fields.items()})  # type: ignore[arg-type]


def test_from_tokens_reads_first_and_last_token_times() -> None:
    """from_tokens: first and last event per request; NaN for a request with none."""
    record = EngineRecord.from_tokens([0.0, 0.0, 0.0], [0, 0, 0], [1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(record.first_token_s, [0.2, 0.1, np.nan])
    np.testing.assert_allclose(record.finish_s, [0.2, 0.4, np.nan])


def test_iteration_means_weight_by_duration() -> None:
    """A long iteration counts more than a short one; energy is summed."""
    frame = ITERATIONS.iloc[[0, 2]]
    means = iteration_means(frame)
    assert means["batch_size_mean"] == pytest.approx((1 * 0.4 + 2 * 1.1) / 1.5)
    assert means["energy_j"] == pytest.approx(4.0) and means["n_iterations"] == 2


def test_energy_and_cost_helpers() -> None:
    """Helpers: J per token, W over the run, USD per million tokens."""
    assert energy_per_output_token_j(100.0, 50) == pytest.approx(2.0)
    assert average_power_w(7000.0, 10.0) == pytest.approx(700.0)
    # 8 chips at $2/h for one hour making 1.44e6 tokens: $16 / 1.44 M tokens.
    assert usd_per_million_tokens(3600.0, 1_440_000, 2.0, 8) == pytest.approx(16 / 1.44)
    assert math.isnan(energy_per_output_token_j(1.0, 0))


@pytest.mark.parametrize("n_keys", [7, 1 << 16, 70_000, 5_000_000])
def test_radix_order_is_numpys_stable_argsort(n_keys: int) -> None:
    """The 16-bit radix passes order token events exactly as a stable argsort would."""
    keys = np.random.default_rng(n_keys).integers(0, n_keys, 50_000)
    assert np.array_equal(_stable_order(keys, n_keys), np.argsort(keys, kind="stable"))
