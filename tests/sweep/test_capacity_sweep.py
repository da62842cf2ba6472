"""Capacity sweeps: ``phase: capacity`` workloads search the highest arrival rate within an
SLO at every point, on every executor, and resume like any sweep."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hwsim.errors import ConfigError
from hwsim.sweep import load_spec, spec_from_dict, sweep

ROOT = Path(__file__).resolve().parents[2]
BW = "param_memory.hbm.bandwidth_bytes_per_s"
# 2 layers of LLaMA-2-7B, 16 short requests: a search of at most 8 serving runs per point.
# The TPOT limit binds on the lower bandwidths (0 capacity at 1 TB/s) and not at 5 TB/s.
CAPACITY: dict[str, Any] = {
    "name": "tiny-capacity",
    "arch": "h100-sxm",
    "workloads": [{"model": "llama2-7b", "phase": "capacity", "n_layers": 2,
                   "capacity": {"slo": {"ttft_s": 0.05, "tpot_s": 0.001}, "n_requests": 16,
                                "prompt_len": 64, "output_len": 8, "max_evals": 8}}],
    "parameters": {"memory.hbm.bandwidth_bytes_per_s": [1.0e12, 2.0e12, 3.35e12, 5.0e12]},
    "objectives": {"capacity_requests_per_s": "max", "capacity_requests_per_s_per_usd": "max"},
}


def _spec(**capacity: Any) -> dict[str, Any]:
    spec = copy.deepcopy(CAPACITY)
    spec["workloads"][0]["capacity"].update(capacity)
    return spec


def test_capacity_columns_are_filled_and_consistent():
    frame = sweep(CAPACITY, executor="serial").to_frame()
    assert len(frame) == 4 and frame["error"].isna().all()
    cap = frame["capacity_requests_per_s"]
    assert cap.iloc[0] == 0.0 and cap.iloc[-1] > 0  # the SLO is out of reach at 1 TB/s only
    assert (cap <= frame["capacity_bound_requests_per_s"]).all()
    # One chip per point: per chip equals the capacity; per USD divides by the chip's cost.
    pd.testing.assert_series_equal(frame["capacity_requests_per_s_per_chip"], cap, check_names=False)
    pd.testing.assert_series_equal(frame["capacity_requests_per_s_per_usd"], cap / frame["chip_cost_usd"],
                                   check_names=False)
    assert frame["capacity_evaluations"].between(2, 8).all()
    assert frame["latency_s"].isna().all()  # no single pass is simulated for a capacity row


def test_same_spec_gives_the_same_frame():
    a = sweep(CAPACITY, executor="serial").to_frame()
    b = sweep(CAPACITY, executor="serial").to_frame()
    pd.testing.assert_frame_equal(a, b)


def test_more_bandwidth_or_a_looser_slo_never_lowers_capacity():
    tight = sweep(_spec(slo={"ttft_s": 0.05, "tpot_s": 0.0006}), executor="serial").to_frame()
    loose = sweep(CAPACITY, executor="serial").to_frame()
    for frame in (tight, loose):
        assert frame[BW].is_monotonic_increasing
        assert frame["capacity_requests_per_s"].is_monotonic_increasing
    assert (loose["capacity_requests_per_s"] >= tight["capacity_requests_per_s"]).all()
    assert (loose["capacity_requests_per_s"] > tight["capacity_requests_per_s"]).any()


def test_process_executor_equals_serial():
    serial = sweep(CAPACITY, executor="serial").to_frame()
    process = sweep(CAPACITY, executor="process", workers=2, chunk_size=1).to_frame()
    pd.testing.assert_frame_equal(serial, process)


def test_dask_executor_equals_serial():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        dask = sweep(CAPACITY, executor="dask", scheduler=cluster.scheduler_address, chunk_size=2).to_frame()
    pd.testing.assert_frame_equal(sweep(CAPACITY, executor="serial").to_frame(), dask)


def test_interrupted_capacity_sweep_resumes_with_every_point_once(tmp_path):
    """Rows persisted before a crash are kept; resuming evaluates only the rest."""
    out = tmp_path / "out"

    def crash(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(CAPACITY, out, executor="serial", chunk_size=1, flush_rows=1, progress=crash)
    seen: list[int] = []
    resumed = sweep(CAPACITY, out, executor="serial", chunk_size=1, resume=True,
                    progress=lambda done, total: seen.append(total)).to_frame()
    assert seen[0] == 2  # only the two points not stored
    assert list(resumed["point_id"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(resumed, sweep(CAPACITY, executor="serial").to_frame())


def test_shipped_example_runs_and_is_monotone():
    path = ROOT / "workloads" / "sweeps" / "capacity-hbm.yaml"
    frame = sweep(load_spec(path), executor="serial").to_frame()
    assert frame["error"].isna().all() and len(frame) == 4
    assert frame["capacity_requests_per_s"].is_monotonic_increasing
    assert frame["capacity_requests_per_s"].iloc[-1] > 0


def test_plain_sweeps_keep_their_columns_and_ids(tiny_spec):
    """Sweeps without a capacity workload keep their columns (no capacity_*) and ids,
    so their directories still resume."""
    from hwsim.sweep.run import result_columns

    spec = spec_from_dict(tiny_spec)
    assert not any(c.startswith("capacity_") for c in result_columns(spec))
    data = spec.model_dump(mode="json")
    assert data["workloads"][0]["capacity"] is None
    assert spec.sweep_id() == spec_from_dict(tiny_spec).sweep_id()


@pytest.mark.parametrize(("change", "where", "message"), [
    ({"capacity": None}, "workloads[0]", "phase capacity needs a capacity block"),
    ({"capacity": {"n_requests": 8}}, "workloads[0].capacity.slo", "Field required"),
    ({"capacity": {"slo": {}}}, "workloads[0].capacity.slo", "at least one limit"),
    ({"capacity": {"slo": {"ttft_s": 0}}}, "workloads[0].capacity.slo.ttft_s", "greater than 0"),
    ({"capacity": {"slo": {"tpot_s": 0.1}, "rel_tol": 1.0}}, "workloads[0].capacity", "rel_tol"),
    ({"capacity": {"slo": {"tpot_s": 0.1}, "max_evals": 2}}, "workloads[0].capacity.max_evals", "3"),
    ({"capacity": {"slo": {"tpot_s": 0.1}, "scheduler": "fifo"}}, "workloads[0].capacity.scheduler", "vllm"),
    ({"batch": 4}, "workloads[0]", "batch: not an option of a capacity workload"),
    ({"phase": "decode"}, "workloads[0]", "needs phase: capacity"),
])
def test_bad_capacity_specs_name_the_file_and_dotted_path(tmp_path, change, where, message):
    import yaml

    spec = copy.deepcopy(CAPACITY)
    w = spec["workloads"][0]
    for key, value in change.items():
        if value is None:
            w.pop(key)
        else:
            w[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    text = str(info.value)
    assert f"{path}: {where}" in text and message in text, text


def test_sweeping_a_request_shape_option_of_a_capacity_workload_is_refused():
    spec = copy.deepcopy(CAPACITY)
    spec["parameters"]["workload.batch"] = [1, 2]
    with pytest.raises(ConfigError, match=r"parameters.workload.batch: 'batch' is not an option of capacity"):
        sweep(spec, executor="serial")


def test_unknown_capacity_objective_is_refused():
    with pytest.raises(ConfigError, match="unknown objective capacity_rps"):
        sweep(CAPACITY | {"objectives": {"capacity_rps": "max"}}, executor="serial")


def test_system_and_plan_count_the_chips_they_use():
    """On a DGX H100 with tp=2 the point's chip is each of the system's chips: capacity
    per chip and per USD divide by the 2 chips used; tensor parallelism on the tight
    TPOT lifts the capacity above one chip's."""
    one = sweep(CAPACITY, executor="serial").to_frame()
    tp2 = sweep(_spec(system="dgx-h100", tp=2), executor="serial").to_frame()
    assert tp2["error"].isna().all()
    cap = tp2["capacity_requests_per_s"]
    pd.testing.assert_series_equal(tp2["capacity_requests_per_s_per_chip"], cap / 2, check_names=False)
    pd.testing.assert_series_equal(tp2["capacity_requests_per_s_per_usd"], cap / (2 * tp2["chip_cost_usd"]),
                                   check_names=False)
    assert (cap >= one["capacity_requests_per_s"]).all()
    assert cap.is_monotonic_increasing


def test_unknown_system_is_refused_before_any_point(tmp_path):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_spec(system="dgx-h1000")))
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert f"{path}: workloads[0].capacity.system: dgx-h1000: unknown system" in str(info.value)
