"""The public API: the issue's snippet, requests, fit errors, arch arguments, cost caching."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest

import hwsim
from hwsim._paths import data_dir

FRAME_COLUMNS = {"pass", "segment", "layer", "op", "kind", "start_s", "end_s", "latency_s", "flops",
                 "compute_cycles", "hbm_bytes", "prefetched_bytes", "bound", "energy_j", "detail"}
JSON_KEYS = {"latency_s", "energy_j", "tokens_per_s", "achieved_flops_per_s", "hbm_bytes", "flops",
             "tokens", "energy_per_token_j", "compute_utilization"}


def _issue_workloads() -> dict[str, hwsim.Workload]:
    """The workloads the issue's API snippet builds, by the names used as test ids."""
    return {
        "llama2-70b-decode": hwsim.load_workload("llama2-70b", phase="decode", batch=16, context_len=2048,
                                                 n_layers=10),
        "llama2-7b-prefill": hwsim.load_workload("llama2-7b", phase="prefill", batch=1, prompt_len=2048),
        "llama2-7b-request": hwsim.load_workload("llama2-7b", phase="request", batch=1, prompt_len=512,
                                                 new_tokens=128),
        "bert-large-train": hwsim.load_workload("bert-large", phase="train", batch=32, seq_len=128),
        "gemm": hwsim.ops.gemm(m=1, k=8192, n=57344, dtype="bf16"),
        "attention": hwsim.ops.attention(batch=1, n_heads=64, n_kv_heads=8, q_len=1, kv_len=8192,
                                         head_dim=128, is_causal=False, dtype="bf16"),
    }


@pytest.fixture(scope="module")
def issue_results() -> dict[str, hwsim.Result]:
    arch = hwsim.load_arch("h100-sxm")
    assert isinstance(arch, hwsim.Chip)
    return {name: hwsim.simulate(w, arch) for name, w in _issue_workloads().items()}


ISSUE_NAMES = list(_issue_workloads())


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_issue_snippet_totals(issue_results: dict[str, hwsim.Result], name: str) -> None:
    """Each workload of the issue's snippet simulates to a positive float latency and energy."""
    r = issue_results[name]
    assert isinstance(r, hwsim.Result)
    assert r.arch == "h100-sxm"
    for value in (r.latency_s, r.energy_j, r.flops, r.tokens_per_s, r.achieved_flops_per_s):
        assert isinstance(value, float)
        assert value > 0
    assert 0 < r.compute_utilization <= 1


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_issue_snippet_frame(issue_results: dict[str, hwsim.Result], name: str) -> None:
    """to_frame() is a DataFrame with one row per op instance and unit-suffixed columns."""
    r = issue_results[name]
    frame = r.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert set(frame.columns) >= FRAME_COLUMNS
    assert len(frame) == _issue_workloads()[name].n_ops
    assert (frame["end_s"] >= frame["start_s"]).all()
    assert (frame["flops"] >= 0).all() and (frame["compute_cycles"] >= 0).all()
    assert (frame["hbm_bytes"] > 0).all() and (frame["energy_j"] > 0).all()
    assert set(frame["bound"]) <= {"compute", "overhead", "smem", "l2", "hbm"}


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_issue_snippet_json(issue_results: dict[str, hwsim.Result], name: str) -> None:
    """to_json() parses to the totals with units in the keys, equal to the attributes."""
    r = issue_results[name]
    text = r.to_json()
    assert isinstance(text, str)
    data = json.loads(text)
    assert set(data) >= JSON_KEYS
    assert data["latency_s"] == r.latency_s
    assert data["energy_j"] == r.energy_j
    assert data["tokens_per_s"] == r.tokens_per_s
    assert data["achieved_flops_per_s"] == r.achieved_flops_per_s
    assert data["hbm_bytes"] == r.bytes_by_level["hbm_bytes"]
    with_ops = json.loads(r.to_json(include_ops=True))
    assert len(with_ops["ops"]) == len(r.to_frame())


def test_issue_snippet_units_are_plausible(issue_results: dict[str, hwsim.Result]) -> None:
    """Seconds and joules, not ms or mJ: a 7B decode step is milliseconds, a 7B prefill of
    2048 tokens tens of milliseconds, and a GEMV of 0.94 GB reads it at most at HBM speed."""
    assert 1e-3 < issue_results["llama2-70b-decode"].latency_s < 0.1
    assert 1e-2 < issue_results["llama2-7b-prefill"].latency_s < 1.0
    gemm = issue_results["gemm"]
    assert gemm.latency_s >= 8192 * 57344 * 2 / 3.35e12
    assert gemm.bytes_by_level["hbm_bytes"] >= 8192 * 57344 * 2


# Requests ---------------------------------------------------------------------------------

def _request(prompt_len: int, new_tokens: int, arch: str = "h100-sxm") -> hwsim.Result:
    w = hwsim.load_workload("llama2-7b", phase="request", batch=1, prompt_len=prompt_len,
                            new_tokens=new_tokens)
    return hwsim.simulate(w, arch)


@pytest.mark.parametrize("arch", ["h100-sxm", "tpu-v4"])
def test_request_ttft_is_prefill_latency(arch: str) -> None:
    """A request's ttft_s is the latency of the same prompt's prefill alone."""
    r = _request(512, 4, arch)
    prefill = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="prefill", batch=1, prompt_len=512), arch)
    assert r.ttft_s == pytest.approx(prefill.latency_s, rel=1e-6)


@pytest.mark.parametrize("arch", ["h100-sxm", "tpu-v4"])
def test_request_tpot_is_mean_decode_step(arch: str) -> None:
    """tpot_s is the mean latency of the decode steps (cache growing from the prompt length),
    and latency = ttft + new_tokens x tpot."""
    prompt, new = 512, 6
    r = _request(prompt, new, arch)
    steps = [hwsim.simulate(hwsim.load_workload("llama2-7b", phase="decode", batch=1,
                                                context_len=prompt + i), arch).latency_s
             for i in range(new)]
    assert r.ttft_s is not None and r.tpot_s is not None
    assert r.tpot_s == pytest.approx(statistics.mean(steps), rel=1e-3)
    assert r.latency_s == pytest.approx(r.ttft_s + new * r.tpot_s, rel=1e-9)
    assert r.tokens == new
    assert r.tokens_per_s == pytest.approx(new / r.latency_s, rel=1e-9)
    summary = r.summary()
    assert summary["ttft_s"] == r.ttft_s and summary["tpot_s"] == r.tpot_s


def test_request_tpot_grows_with_prompt_length() -> None:
    """A longer prompt means a larger KV cache to read per step: tpot rises, and so does ttft."""
    short, long = _request(128, 4), _request(4096, 4)
    assert long.tpot_s > short.tpot_s
    assert long.ttft_s > short.ttft_s


def test_non_request_has_no_ttft() -> None:
    """Only requests report ttft_s and tpot_s."""
    r = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="decode", batch=1, n_layers=2), "h100-sxm")
    assert r.ttft_s is None and r.tpot_s is None
    assert "ttft_s" not in r.summary()


# Fit errors -------------------------------------------------------------------------------

def test_llama2_70b_does_not_fit_one_h100() -> None:
    """All 80 layers of llama2-70b (128 GiB of bf16 weights) do not fit an 80 GB HBM."""
    w = hwsim.load_workload("llama2-70b", phase="decode", batch=16, context_len=2048)
    with pytest.raises(hwsim.MappingError) as info:
        hwsim.simulate(w, "h100-sxm")
    message = str(info.value)
    assert "'hbm'" in message
    assert "GiB" in message
    assert "weights" in message
    assert isinstance(info.value, hwsim.HwsimError)


def test_llama2_7b_does_not_fit_groq_sram() -> None:
    """A single Groq LPU holds ~220 MiB of SRAM: llama2-7b's weights do not fit."""
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=1, context_len=512)
    with pytest.raises(hwsim.MappingError, match="'sram'") as info:
        hwsim.simulate(w, "groq-lpu")
    assert "GiB" in str(info.value)


# Arch arguments and caching -------------------------------------------------------------

def _same(a: hwsim.Result, b: hwsim.Result) -> None:
    assert a.latency_s == b.latency_s
    assert a.energy_j == b.energy_j
    assert a.summary() == b.summary()
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame(), check_exact=True)


def test_arch_by_name_chip_or_path_is_the_same(tmp_path: Path) -> None:
    """simulate() gives the same result for a preset name, a Chip, its YAML path and a copy."""
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=4, context_len=1024, n_layers=3)
    preset = data_dir("arch_configs") / "h100-sxm.yaml"
    copy = tmp_path / "my_gpu.yaml"
    shutil.copy(preset, copy)
    by_name = hwsim.simulate(w, "h100-sxm")
    for arch in (hwsim.load_arch("h100-sxm"), preset, str(preset), copy):
        _same(by_name, hwsim.simulate(w, arch))


def test_cost_cache_reuse_gives_identical_results() -> None:
    """A CostCache shared across runs gives results identical to uncached runs, and a second
    run of the same workload adds no entries."""
    chip = hwsim.load_arch("h100-sxm")
    cache = hwsim.CostCache(chip)
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=4, context_len=1024, n_layers=3)
    first = hwsim.simulate(w, chip, cache=cache)
    n_costs = len(cache)
    assert n_costs > 0
    second = hwsim.simulate(w, chip, cache=cache)
    assert len(cache) == n_costs
    _same(first, second)
    _same(first, hwsim.simulate(w, chip))
    other = hwsim.load_workload("llama2-7b", phase="prefill", batch=1, prompt_len=256, n_layers=3)
    _same(hwsim.simulate(other, chip, cache=cache), hwsim.simulate(other, chip))


def test_cost_cache_of_another_chip_is_not_used() -> None:
    """A cache built for one chip never feeds its costs into a run on a different chip."""
    h100_cache = hwsim.CostCache(hwsim.load_arch("h100-sxm"))
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=4, context_len=1024, n_layers=3)
    hwsim.simulate(w, h100_cache.chip, cache=h100_cache)
    tpu = hwsim.load_arch("tpu-v4")
    _same(hwsim.simulate(w, tpu, cache=h100_cache), hwsim.simulate(w, tpu))


def test_unknown_arch_is_a_config_error() -> None:
    """An unknown preset name raises ConfigError naming it."""
    w = hwsim.ops.gemm(16, 16, 16)
    with pytest.raises(hwsim.ConfigError, match="h100-sxn"):
        hwsim.simulate(w, "h100-sxn")
