"""A sweep's frame is, bit for bit, what the plain path gives point by point: each chip
built on its own from the preset (``with_overrides`` without a kept dump), its area and
cost computed separately, its workload simulated with a fresh cost cache and every GEMM
costed by the scalar reference (``matmul_cost_scalar``). The sweep's shortcuts (one-pass
systolic GEMMs, copy-on-write chip variants, one area per chip, the paused collector)
must change no value; rejected rows must be rejected for a reason the plain path gives."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

import hwsim
from hwsim.arch import load_arch, with_overrides
from hwsim.cost import matmul
from hwsim.cost.area import chip_area
from hwsim.cost.die_cost import chip_cost_usd, cost_per_million_tokens_usd
from hwsim.errors import HwsimError
from hwsim.mapping.fit import check_fit
from hwsim.sweep import evaluate, sweep
from hwsim.sweep.check import check_spec
from hwsim.sweep.expr import parse_expr
from hwsim.sweep.sample import sample_points
from hwsim.sweep.spec import METRICS, spec_from_dict
from hwsim.technology import load_technology

SYSTOLIC: dict[str, Any] = {
    "name": "exact-systolic", "arch": "systolic-128",
    "workloads": [{"model": "llama2-7b", "phase": "decode", "context_len": 2048, "n_layers": 2},
                  {"model": "llama2-7b", "phase": "prefill", "prompt_len": 256, "n_layers": 2}],
    "parameters": {"compute_units.rows": [32, 128, 512], "compute_units.cols": [64, 256],
                   "memory.sram.capacity_bytes": [1048576, 33554432],
                   "memory.dram.bandwidth_bytes_per_s": [5.0e10, 8.0e11]},
    "derived": {"compute_units.flops_per_cycle.bf16": "2 * compute_units.rows * compute_units.cols",
                "memory.sram.bandwidth_bytes_per_s": "4.0e+9 * (compute_units.rows + compute_units.cols)"},
    "constraints": ["fits", "area_mm2 <= 150", "power_w <= 20"],
    "objectives": {"latency_s": "min", "energy_per_token_j": "min", "cost_per_mtok_usd": "min"},
}
TENSOR_CORE: dict[str, Any] = {
    "name": "exact-h100", "arch": "h100-sxm",
    "workloads": [{"model": "llama2-7b", "phase": "decode", "batch": 8, "context_len": 1024, "n_layers": 2}],
    "parameters": {"memory.hbm.bandwidth_bytes_per_s": [1.0e12, 3.35e12], "compute_units.count": [66, 132],
                   "memory.hbm.capacity_bytes": [1.0e9, 8.0e10]},
    "constraints": ["fits", "area_mm2 <= 800"],
    "objectives": {"latency_s": "min", "cost_per_mtok_usd": "min"},
}


def _same(a: Any, b: Any) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == b


def _plain_row(spec: Any, point: dict[str, Any], row: pd.Series, tech: Any) -> dict[str, Any]:
    """The metrics of one row by the plain path, and why check_fit refuses it (or None)."""
    chip = with_overrides(load_arch(spec.arch), point)
    w = next(w for w in spec.workloads if w.name == row["workload"])
    area = chip_area(chip, tech)
    out: dict[str, Any] = {"area_mm2": area.total_mm2, "chip_cost_usd": chip_cost_usd(chip, tech)}
    workload = hwsim.load_workload(w.model, phase=w.phase, **w.options())
    try:
        check_fit(workload, chip)
    except HwsimError as exc:
        return out | {"unfit": str(exc)}
    res = hwsim.simulate(workload, chip)
    power = res.energy_j / res.latency_s
    c = spec.cost
    return out | {"latency_s": res.latency_s, "energy_j": res.energy_j,
                  "energy_per_token_j": res.energy_per_token_j, "tokens_per_s": res.tokens_per_s,
                  "power_w": power, "compute_utilization": res.compute_utilization,
                  "bound": res.bound, "unfit": None,
                  "published_ppl_delta": evaluate._published_ppl_delta(workload),  # a lookup
                  "cost_per_mtok_usd": cost_per_million_tokens_usd(
                      out["chip_cost_usd"], power, res.tokens_per_s, lifetime_years=c.lifetime_years,
                      utilization=c.utilization, usd_per_kwh=c.usd_per_kwh)}


@pytest.mark.parametrize("spec_dict", [SYSTOLIC, TENSOR_CORE], ids=["systolic", "tensor_core"])
def test_sweep_frame_equals_the_plain_path_bit_for_bit(spec_dict: dict[str, Any], monkeypatch) -> None:
    evaluate._CONTEXTS.clear()
    frame = sweep(spec_dict, executor="serial", chunk_size=5).to_frame()
    assert len(frame) >= 8 and frame["error"].isna().any() and frame["error"].notna().any()
    spec = spec_from_dict(spec_dict)
    points = sample_points(check_spec(spec, "<test>"))
    monkeypatch.setattr(matmul, "systolic_fast_path", lambda chip: False)  # the scalar reference
    tech = load_technology()
    exprs = {c: parse_expr(c) for c in spec_dict["constraints"] if c != "fits"}
    for _, row in frame.iterrows():
        point = points[row["point_id"]]
        plain = _plain_row(spec, point, row, tech)
        assert row["area_mm2"] == plain["area_mm2"] and row["chip_cost_usd"] == plain["chip_cost_usd"]
        error = row["error"]
        if error is None or (isinstance(error, float) and math.isnan(error)):
            for name in (*METRICS, "bound"):
                assert _same(row[name], plain[name]), (row["point_id"], name, row[name], plain[name])
        elif error.startswith("constraint fits"):
            assert plain["unfit"] is not None and plain["unfit"] in error
        else:
            text = error.removeprefix("constraint ").split(" violated")[0]
            env = {**point, **{k: v for k, v in plain.items() if k != "unfit"}}
            assert not exprs[text].evaluate(env), (row["point_id"], error)
