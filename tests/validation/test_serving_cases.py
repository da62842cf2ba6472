"""The serving validation cases (hwsim/validation/serving.py): built from the check split
only, every one a check row whose name states its caps, TensorRT-LLM's free-memory KV
fraction converted exactly, and the steady-state throughput of a server run."""

from __future__ import annotations

import pandas as pd
import pytest

import hwsim
from hwsim.validation import serving
from hwsim.validation.published import FOLDER
from hwsim.validation.serving import ServingRun, serving_cases, serving_run, steady_rates
from hwsim.workload.precision import resolve_precision

FRAME = pd.read_csv(FOLDER / "serving.csv", keep_default_na=False, dtype=str)


def test_cases_come_from_the_check_split_only() -> None:
    """Every case is a check row of the check split; none is a heldout row; groups are
    the three serving groups; a third of the runs (every RUN_STRIDE-th) are in."""
    cases = list(serving_cases())
    assert cases and all(c.role == "check" and not c.fitted for c in cases)
    assert {c.group for c in cases} == {serving.GROUP_ONE_GPU, serving.GROUP_MULTI_GPU, serving.GROUP_LATENCY}
    heldout = set(FRAME.loc[FRAME["split"] == "heldout", "value"].astype(float))
    check = FRAME[FRAME["split"] == "check"]
    runs = {serving_run(r) for r in check.to_dict("records")} - {None}
    every = list(serving_cases(every_run=True))
    assert len(cases) < len(every) <= len(check)
    assert {c.measured for c in every} <= set(check["value"].astype(float))
    assert len({c.name for c in every}) == len(every)
    assert len(runs) // serving.RUN_STRIDE <= len({c.name.rsplit(":", 1)[0] for c in cases})
    assert heldout  # the split exists
    held = list(serving_cases("heldout"))
    assert held and {c.measured for c in held} <= heldout


def test_names_state_the_caps() -> None:
    """An offline case says how much of the run was simulated, a server case how many
    arrivals."""
    for case in serving_cases(every_run=True):
        if "offline" in case.name:
            assert f"<= {serving.OFFLINE_WAVES} batches of" in case.name
        if "Poisson" in case.name:
            assert "first " in case.name


def test_left_out_rows() -> None:
    """MLPerf Mixtral (no input lengths), Mistral (not shipped) and a generation rate
    without an output length make no run."""
    for row in FRAME.to_dict("records"):
        if row["scenario"].startswith("mlperf") and row["model"] == "mixtral-8x7b":
            assert serving_run(row) is None
        if row["model_status"] == "not shipped":
            assert serving_run(row) is None
        if not row["scenario"].startswith("mlperf") and not row["output_len"]:
            assert serving_run(row) is None


def _run(**kw: object) -> ServingRun:
    base = {"system": "h100-sxm", "model": "llama2-7b", "dtype": "bf16", "tp": 1, "replicas": 1,
            "scenario": "offline_max_throughput", "prompt_len": 128, "output_len": 16, "n_requests": 10**6,
            "rate_per_s": 0.0, "max_num_seqs": 4096, "free_memory_fraction": 0.9}
    return ServingRun(**{**base, **kw})  # type: ignore[arg-type]


def test_free_memory_fraction_is_converted_exactly() -> None:
    """The KV cache gets f of the memory left after weights, activations and workspace."""
    system, cache = hwsim.load_system("h100-sxm"), hwsim.ServeCache()
    run = _run()
    fraction = run.memory_fraction(system, cache)
    kv = run._pool_kv(system, cache, fraction)
    free = kv.memory_bytes - kv.weights_bytes - kv.activations_bytes - kv.workspace_bytes
    assert kv.kv_bytes == pytest.approx(0.9 * free, abs=kv.block_bytes)
    assert run.simulated_requests(system, cache, fraction) == min(4096, kv.n_blocks // 9)


def test_steady_rates_of_a_server_that_keeps_up() -> None:
    """A lightly loaded server completes what arrives: its steady output rate is the
    arrival rate times the output length, within the noise of 200 arrivals."""
    reqs = hwsim.Requests.poisson(200, 20.0, 128, 16, seed=0)
    res = hwsim.serve(reqs, "h100-sxm", model="llama2-7b", n_layers=2)
    tokens, done = steady_rates(res)
    measured = 150 / (reqs.arrival_s[-1] - reqs.arrival_s[50])  # arrivals in the window
    assert done == pytest.approx(measured, rel=0.05)
    assert tokens == pytest.approx(16 * measured, rel=0.05)
    assert tokens == 16 * done


def test_fp8_rows_keep_the_residual_stream_and_all_reduces_16_bit() -> None:
    """An FP8 TensorRT-LLM engine quantizes the layers' GEMMs and the KV cache only: in
    a TP2 decode step of an fp8 row each all-reduce moves tokens x hidden x 2 bytes (the
    16-bit model dtype), not 1 byte; a 16-bit row stays one dtype throughout."""
    fp8 = _run(dtype="fp8", tp=2, system="dgx-h100").precision()
    prec = resolve_precision("test", fp8)
    assert (prec.weights, prec.activations, prec.kv_cache) == ("fp8", "fp8", "fp8")
    assert (prec.base, prec.lm_head, prec.embeddings) == ("bf16", "bf16", "bf16")
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=64, context_len=128, precision=fp8,
                            plan=hwsim.Plan(tp=2), n_layers=1)
    graph = w.to_graph()
    sums = [graph.nodes[n]["op"].n_bytes for n in graph.nodes if str(n).endswith("/attn_allreduce")]
    assert sums == [64 * 4096 * 2]
    uniform = resolve_precision("test", _run(dtype="fp16").precision())
    assert {uniform.base, uniform.kv_cache, uniform.weights, uniform.lm_head} == {"fp16"}
