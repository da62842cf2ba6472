"""Running sweeps: rows, constraints with reasons, failures recorded, executors agree."""

from __future__ import annotations

import pandas as pd
import pytest

import hwsim
from hwsim.sweep import sweep
from hwsim.sweep.evaluate import _CONTEXTS, evaluate_tasks
from hwsim.sweep.spec import METRICS
from tests.sweep.conftest import make_spec


def test_rows_match_single_simulations(tiny_spec):
    """Every row carries its parameters and the metrics hwsim.simulate gives for that
    chip; power is energy over latency."""
    result = hwsim.sweep(tiny_spec, executor="serial")
    frame = result.to_frame()
    assert len(frame) == 12 and frame["error"].isna().all()
    assert list(frame["point_id"]) == list(range(12))
    assert {"param_compute_units.rows", "param_compute_units.cols", "bound", "workload",
            *METRICS} <= set(frame)
    row = frame.iloc[5]
    chip = hwsim.arch.with_overrides(hwsim.load_arch("systolic-128"), {
        "compute_units.rows": int(row["param_compute_units.rows"]),
        "compute_units.cols": int(row["param_compute_units.cols"]),
        "compute_units.flops_per_cycle.bf16": 32768,
        "memory.dram.bandwidth_bytes_per_s": float(row["param_memory.dram.bandwidth_bytes_per_s"])})
    ref = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="decode", n_layers=2), chip)
    assert row["latency_s"] == ref.latency_s and row["energy_j"] == ref.energy_j
    assert row["power_w"] == pytest.approx(ref.energy_j / ref.latency_s)
    assert row["bound"] == ref.bound


def test_more_dram_bandwidth_never_slows_a_point(tiny_spec):
    """Physics through the sweep: at fixed array shape, latency falls (weakly) with DRAM bandwidth."""
    frame = sweep(tiny_spec, executor="serial").to_frame()
    for _, group in frame.groupby("param_compute_units.rows"):
        lat = group.sort_values("param_memory.dram.bandwidth_bytes_per_s")["latency_s"].to_numpy()
        assert (lat[1:] <= lat[:-1] * (1 + 1e-12)).all()


def test_sensitivity_lists_the_swept_parameters_only(tiny_spec):
    """Derived columns (cols, bf16 rate) follow from rows; only swept parameters are listed,
    and latency falls with DRAM bandwidth."""
    s = sweep(tiny_spec, executor="serial").sensitivity()
    assert s["parameter"].unique().tolist() == ["compute_units.rows", "memory.dram.bandwidth_bytes_per_s"]
    assert s["objective"].unique().tolist() == ["latency_s", "energy_per_token_j"]
    bw = s.set_index(["parameter", "objective"]).loc[("memory.dram.bandwidth_bytes_per_s", "latency_s")]
    assert bw["spearman_rho"] < 0


def test_constraints_reject_with_reasons_and_the_sweep_goes_on(tiny_spec):
    """A violated constraint records which and the values; other rows still run."""
    spec = tiny_spec | {"constraints": ["power_w <= 12", "compute_units.rows >= 64"]}
    frame = sweep(spec, executor="serial").to_frame()
    small = frame[frame["param_compute_units.rows"] == 32]
    assert small["error"].str.startswith("constraint compute_units.rows >= 64 violated").all()
    assert small["latency_s"].isna().all(), "a parameter constraint rejects before simulating"
    hot = frame[(frame["param_compute_units.rows"] > 32) & (frame["power_w"] > 12)]
    assert len(hot) and hot["error"].str.contains(r"constraint power_w <= 12 violated \(power_w = ").all()
    ok = frame[frame["error"].isna()]
    assert len(ok) and (ok["power_w"] <= 12).all()


def test_failures_are_rows_with_their_reason():
    """A model that does not fit (fits constraint), an invalid combination of values and
    a derived division by zero each become a row with the reason."""
    spec = make_spec(workloads=[{"model": "llama2-70b", "phase": "decode"}], constraints=["fits"],
                     parameters={"memory.dram.capacity_bytes": [1.0e9, 2.0e11]}, derived={})
    frame = sweep(spec, executor="serial").to_frame()
    assert frame.loc[0, "error"].startswith("constraint fits: llama2-70b (decode) needs")
    assert pd.isna(frame.loc[1, "error"]) and frame.loc[1, "latency_s"] > 0
    spec = make_spec(parameters={"compute_units.rows": [64, 100]})  # 16384 / 100 is not whole
    frame = sweep(spec, executor="serial").to_frame()
    assert pd.isna(frame.loc[0, "error"])
    assert "compute_units.cols" in frame.loc[1, "error"]


def test_points_with_the_same_chip_share_one_cost_cache(tiny_spec):
    """Two workload values on one chip: one chip entry, its cache reused."""
    spec = make_spec(parameters={"compute_units.rows": [64], "workload.context_len": [512, 1024, 2048]})
    payload = sweep(spec, executor="serial").spec.model_dump(mode="json")
    _CONTEXTS.clear()
    rows = evaluate_tasks(payload, [(i, {"compute_units.rows": 64, "compute_units.cols": 256,
                                         "compute_units.flops_per_cycle.bf16": 32768,
                                         "workload.context_len": c}, 0)
                                    for i, c in enumerate([512, 1024, 2048])])
    ctx = next(iter(_CONTEXTS.values()))
    assert len(ctx.chips) == 1 and len(ctx.workloads) == 3
    assert rows[0]["latency_s"] < rows[2]["latency_s"], "a longer KV cache takes longer"


def test_revisiting_an_evicted_chip_gives_the_same_row(monkeypatch):
    """With room for 3 chips, a revisited chip moves to the back of the LRU and later
    evictions (of chips seen only once) still evaluate: every row equals a fresh one."""
    import hwsim.sweep.evaluate as evaluate

    spec = hwsim.sweep.spec_from_dict(make_spec(parameters={"compute_units.rows": [16, 32, 64, 128]},
                                                derived={}))
    payload = spec.model_dump(mode="json")
    tasks = [(i, {"compute_units.rows": r}, 0) for i, r in enumerate([16, 32, 64, 16, 128, 32])]
    monkeypatch.setattr(evaluate, "MAX_CHIPS", 3)
    _CONTEXTS.clear()
    rows = evaluate_tasks(payload, tasks)
    assert [r["error"] for r in rows] == [None] * 6
    for task, row in zip(tasks, rows, strict=True):
        _CONTEXTS.clear()
        assert evaluate_tasks(payload, [task]) == [row]


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster


def test_serial_process_and_dask_give_identical_results(tiny_spec, dask_cluster):
    """The same rows, bit for bit, from each executor (Dask: a real LocalCluster of two
    worker processes reached through its scheduler address)."""
    spec = tiny_spec | {"workloads": [{"model": "llama2-7b", "n_layers": 2},
                                      {"model": "llama2-7b", "phase": "prefill", "n_layers": 1,
                                       "prompt_len": 128}]}
    serial = sweep(spec, executor="serial").to_frame()
    process = sweep(spec, executor="process", workers=2, chunk_size=1).to_frame()
    dask = sweep(spec, executor="dask", scheduler=dask_cluster.scheduler_address, chunk_size=2).to_frame()
    assert len(serial) == 24
    pd.testing.assert_frame_equal(serial, process)
    pd.testing.assert_frame_equal(serial, dask)


def test_a_chip_without_a_process_node_has_no_area_and_says_so(tmp_path):
    """Area and cost are never guessed: a chip file without process_node_nm sweeps with
    empty area metrics, and a spec that needs them rejects each point naming the field."""
    import yaml

    data = hwsim.load_arch("systolic-128").model_dump(exclude={"process_node_nm"})
    path = tmp_path / "my_array.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")  # levels in order
    params = {"compute_units.rows": [64, 128]}
    frame = sweep(make_spec(arch=str(path), parameters=params), executor="serial").to_frame()
    assert frame["error"].isna().all() and frame["area_mm2"].isna().all()
    assert frame["latency_s"].notna().all()
    needs = make_spec(arch=str(path), parameters=params,
                      objectives={"latency_s": "min", "area_mm2": "min"})
    errors = sweep(needs, executor="serial").to_frame()["error"]
    assert errors.str.contains("process_node_nm: not set").all()
    swept = make_spec(arch=str(path), parameters={"process_node_nm": [7, 16]}, derived=None,
                      objectives={"latency_s": "min", "area_mm2": "min"})
    areas = sweep(swept, executor="serial").to_frame().set_index("param_process_node_nm")["area_mm2"]
    assert areas[7] < areas[16]


def test_precision_is_a_sweepable_workload_option():
    """workload.precision sweeps like any workload option; each row equals hwsim.simulate."""
    spec = make_spec(arch="h100-sxm", parameters={"workload.precision": ["bf16", "w4a16", "fp8-kv"]},
                     derived=None)
    frame = hwsim.sweep(spec, executor="serial").to_frame()
    assert frame["error"].isna().all() and len(frame) == 3
    deltas = dict(zip(frame["param_workload.precision"], frame["published_ppl_delta"], strict=True))
    assert deltas["bf16"] == 0.0 and deltas["w4a16"] == pytest.approx(0.16)  # AWQ Table 4, GPTQ-R
    assert deltas["fp8-kv"] is None or pd.isna(deltas["fp8-kv"])  # nothing published: no proxy
    for _, row in frame.iterrows():
        scheme = row["param_workload.precision"]
        w = hwsim.load_workload("llama2-7b", phase="decode", n_layers=2, precision=scheme)
        assert row["latency_s"] == hwsim.simulate(w, "h100-sxm").latency_s


def test_pareto_over_latency_and_the_accuracy_proxy():
    """An objective on published_ppl_delta keeps only points a paper reports, on the front."""
    spec = make_spec(arch="h100-sxm", derived=None,
                     parameters={"workload.precision": ["bf16", "w4a16", "w4a16-zp", "fp8-kv"]},
                     objectives={"latency_s": "min", "published_ppl_delta": "min"})
    front = hwsim.sweep(spec, executor="serial").pareto()
    assert set(front["param_workload.precision"]) <= {"bf16", "w4a16", "w4a16-zp"}
    assert {"bf16", "w4a16-zp"} <= set(front["param_workload.precision"])
