"""Energy bars: stacked segments sum to energy_j, per arch and per op kind, in J and J/token."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hwsim
from hwsim.plot import EnergyDisplay, energy_frame


def _bar_tops(display: EnergyDisplay) -> np.ndarray:
    """Height of each drawn stack: top of the last segment."""
    last = list(display.bars_.values())[-1]
    return np.array([p.get_y() + p.get_height() for p in last.patches])


def test_stacks_sum_to_energy_per_arch(h100_result, tpu_result, tp8_result, ax):
    """One bar per result whose drawn stack height equals its energy_j."""
    results = [h100_result, tpu_result, tp8_result]
    d = EnergyDisplay.from_results(results, ax=ax)
    assert list(d.values_.index) == ["h100-sxm", "tpu-v4", "dgx-h100"]
    np.testing.assert_allclose(_bar_tops(d), [r.energy_j for r in results], rtol=1e-12)
    np.testing.assert_allclose(d.values_.sum(axis=1), [r.energy_j for r in results], rtol=1e-12)
    assert {"compute", "hbm", "idle", "interconnect", "vmem"} <= set(d.values_.columns)
    assert d.values_.loc["dgx-h100", "interconnect"] == tp8_result.energy_breakdown_j["interconnect_j"]
    assert ax.get_ylabel() == "energy (J)"


def test_per_token_divides_by_tokens(h100_result, ax):
    """unit='j_per_token' gives energy_per_token_j and says J/token on the axis."""
    d = EnergyDisplay.from_results(h100_result, unit="j_per_token", ax=ax)
    assert d.values_.sum(axis=1).iloc[0] == pytest.approx(h100_result.energy_per_token_j)
    assert "(J/token)" in ax.get_ylabel()


def test_by_kind_splits_each_component(tp8_result, ax):
    """Per-kind bars of one result add up to its energy, component by component."""
    d = EnergyDisplay.from_results(tp8_result, by="kind", ax=ax)
    kinds = set(tp8_result.to_frame().kind)
    assert set(d.values_.index) == kinds
    for key, total in tp8_result.energy_breakdown_j.items():
        assert d.values_[key.removesuffix("_j")].sum() == pytest.approx(total, rel=1e-12)
    assert d.values_.loc["all_reduce", "interconnect"] > 0
    assert d.values_.loc["matmul", "compute"] > d.values_.loc["rmsnorm", "compute"]


def test_from_frame_of_summaries(h100_result, tpu_result, ax, tmp_path):
    """Saved Result.summary() rows draw the same bars as the results."""
    path = tmp_path / "summaries.csv"
    pd.DataFrame([r.summary() for r in (h100_result, tpu_result)]).to_csv(path, index=False)
    d = EnergyDisplay.from_frame(pd.read_csv(path), ax=ax)
    np.testing.assert_allclose(d.values_.sum(axis=1), [h100_result.energy_j, tpu_result.energy_j])


def test_energy_frame_columns(h100_result):
    """energy_frame names every component energy_<component>_j, compute first and idle last."""
    f = energy_frame(h100_result)
    comps = [c for c in f.columns if c.startswith("energy_")]
    assert comps == ["energy_compute_j", "energy_smem_j", "energy_l2_j", "energy_hbm_j", "energy_idle_j"]


def test_bad_unit_and_frame_are_config_errors(h100_result):
    """A wrong unit or a frame without energy columns says what is wrong."""
    with pytest.raises(hwsim.ConfigError, match="unit"):
        EnergyDisplay(energy_frame(h100_result), unit="kwh")  # type: ignore[arg-type]
    with pytest.raises(hwsim.ConfigError, match="energy_<component>_j"):
        EnergyDisplay(pd.DataFrame({"arch": ["x"], "latency_s": [1.0]}))
