"""Roofline: one point per op, ceilings at the chip's peaks and bandwidths, units on axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hwsim
from hwsim.arch import with_overrides
from hwsim.cost.model import level_bandwidth_bytes_per_s
from hwsim.plot import RooflineDisplay, roofline_points
from hwsim.workload.ops import COLLECTIVE_KINDS


def _op_count(result: hwsim.Result) -> int:
    """Distinct (pass kind, segment, op) of the frame that have FLOP and are not collectives."""
    f = result.to_frame()
    f = f[(f.flops > 0) & ~f.kind.isin(COLLECTIVE_KINDS)]
    return len(f.groupby([f["pass"].str.replace(r"\d+$", "", regex=True), "segment", "op"]))


def test_one_point_per_op(h100_result, ax):
    """Every op with FLOP is one drawn point; points sum the op's instances over layers."""
    d = RooflineDisplay.from_result(h100_result, ax=ax)
    n = _op_count(h100_result)
    assert len(d.points_) == n
    assert len(d.scatters_["h100-sxm"].get_offsets()) == n
    frame = h100_result.to_frame()
    qkv = d.points_.set_index("op").loc["qkv_proj"]
    rows = frame[frame.op == "qkv_proj"]
    assert qkv.flops == pytest.approx(rows.flops.sum())
    assert qkv.achieved_flops_per_s == pytest.approx(rows.flops.sum() / rows.latency_s.sum())
    assert qkv.intensity_flop_per_byte == pytest.approx(rows.flops.sum() / rows.hbm_bytes.sum())


def test_points_lie_under_the_roof(h100_result, ax):
    """No op beats its chip: achieved FLOP/s <= min(top peak, home bandwidth x intensity)."""
    chip = hwsim.load_arch("h100-sxm")
    d = RooflineDisplay.from_result(h100_result, ax=ax)
    top = max(chip.peak_flops_per_s(dt) for dt in chip.supported_dtypes)
    for p in d.points_.itertuples():
        bw = chip.memory[p.home_level].bandwidth_bytes_per_s
        assert p.achieved_flops_per_s <= min(top, bw * p.intensity_flop_per_byte) * (1 + 1e-9)
    assert d.points_.time_share.between(0, 1).all()


def test_ceilings_at_chip_peaks_and_bandwidths(h100_result, ax):
    """One horizontal line per dtype at its peak, one slanted line per level with slope = bandwidth."""
    chip = hwsim.load_arch("h100-sxm")
    d = RooflineDisplay.from_result(h100_result, ax=ax)
    for dtype in chip.supported_dtypes:
        peak = chip.peak_flops_per_s(dtype)
        assert d.ceilings_[f"h100-sxm {dtype} peak"] == peak
        ys = d.lines_[f"h100-sxm {dtype} peak"].get_ydata()
        assert np.allclose(ys, peak)
    for level in chip.memory:
        bw = level_bandwidth_bytes_per_s(chip, level)  # a per-unit level: all its copies
        assert d.ceilings_[f"h100-sxm {level} bandwidth"] == bw
        xs, ys = d.lines_[f"h100-sxm {level} bandwidth"].get_data()
        assert np.allclose(np.asarray(ys) / np.asarray(xs), bw)
        ridge_x, ridge_y = d.ridges_[f"h100-sxm {level}/bf16"]
        assert ridge_y == chip.peak_flops_per_s("bf16")
        assert ridge_x == pytest.approx(ridge_y / bw)


def test_log_log_with_units(h100_result, ax):
    """Both axes are logarithmic and their labels carry FLOP/byte and FLOP/s."""
    RooflineDisplay.from_result(h100_result, ax=ax)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "(FLOP/byte)" in ax.get_xlabel()
    assert "(FLOP/s)" in ax.get_ylabel()


def test_several_architectures_on_one_chart(h100_result, tpu_result, ax):
    """Each arch gets its own points (distinct markers) and its own ceilings."""
    d = RooflineDisplay.from_results([h100_result, tpu_result], dtypes=["bf16"], ax=ax)
    assert set(d.scatters_) == {"h100-sxm", "tpu-v4"}
    markers = {tuple(map(tuple, s.get_paths()[0].vertices)) for s in d.scatters_.values()}
    assert len(markers) == 2
    tpu_hbm = hwsim.load_arch("tpu-v4").memory["hbm"]
    assert d.ceilings_["tpu-v4 hbm bandwidth"] == tpu_hbm.bandwidth_bytes_per_s
    assert len(d.points_) == _op_count(h100_result) + _op_count(tpu_result)


def test_from_frame_matches_from_result(h100_result, tmp_path):
    """A frame saved to disk and read back draws the same points."""
    path = tmp_path / "ops.csv"
    h100_result.to_frame().to_csv(path, index=False)
    import matplotlib.pyplot as plt

    a = RooflineDisplay.from_result(h100_result)
    b = RooflineDisplay.from_frame(pd.read_csv(path), "h100-sxm")
    pd.testing.assert_frame_equal(a.points_, b.points_, check_dtype=False)
    plt.close(a.figure_)
    plt.close(b.figure_)


def test_modified_chip_is_not_mistaken_for_its_preset():
    """A result of a chip changed with with_overrides is refused against the preset's
    ceilings, and drawn with the chip passed."""
    chip = with_overrides(hwsim.load_arch("h100-sxm"), {"compute_units.clock_hz": 1.0e9})
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=1, n_layers=1)
    r = hwsim.simulate(w, chip)
    with pytest.raises(hwsim.ConfigError, match="pass the chip"):
        RooflineDisplay.from_result(r)
    points = roofline_points(r.to_frame(), chip)
    assert len(points) == _op_count(r)


def test_unknown_dtype_is_a_config_error(h100_result):
    """Asking for a peak the chip does not have names the dtype and the supported ones."""
    with pytest.raises(hwsim.ConfigError, match="fp4"):
        RooflineDisplay(roofline_points(h100_result.to_frame(), hwsim.load_arch("h100-sxm")),
                        {"h100-sxm": hwsim.load_arch("h100-sxm")}, dtypes=["fp4"])


def test_results_on_one_chip_share_one_set_of_ceilings(ax):
    """Prefill and decode on the same chip: both sets of points, the chip's ceilings once."""
    runs = [hwsim.simulate(hwsim.load_workload("llama2-7b", phase=p, batch=1, n_layers=2), "h100-sxm")
            for p in ("prefill", "decode")]
    one = RooflineDisplay.from_results(runs[:1], dtypes=["bf16"])
    d = RooflineDisplay.from_results(runs, dtypes=["bf16"], ax=ax)
    assert len(d.scatters_) == 2
    peaks = [k for k in d.lines_ if k.endswith("bf16 peak")]
    assert len(peaks) == 1
    assert len(ax.get_lines()) == len(one.ax_.get_lines())
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.close(one.figure_)
