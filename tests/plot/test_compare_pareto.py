"""Comparison bars, Pareto fronts and heatmaps draw exactly the data they are given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import hwsim
from hwsim.plot import ComparisonDisplay, HeatmapDisplay, ParetoDisplay, metric_label, pareto_front


def test_comparison_bars_equal_the_metrics(h100_result, tpu_result):
    """Each panel's bar heights are the results' metric, each y label carries its unit."""
    d = ComparisonDisplay.from_results([h100_result, tpu_result])
    assert len(d.axes_) == 3
    for metric, bars in d.bars_.items():
        heights = [b.get_height() for b in bars.patches]
        assert heights == [getattr(h100_result, metric), getattr(tpu_result, metric)]
    assert [a.get_ylabel() for a in d.axes_] == ["latency (s)", "throughput (tokens/s)",
                                                  "energy per token (J/token)"]
    plt.close(d.figure_)


def test_comparison_needs_one_axes_per_metric(h100_result, ax):
    """A single Axes for three metrics is refused; for one metric it is used."""
    with pytest.raises(hwsim.ConfigError, match="3 metrics"):
        ComparisonDisplay.from_results(h100_result, ax=ax)
    d = ComparisonDisplay.from_results(h100_result, metrics=["energy_j"], ax=ax)
    assert d.axes_[0] is ax and ax.get_ylabel() == "energy (J)"


def test_metric_label_units():
    """Units come from the column suffix."""
    assert metric_label("area_mm2") == "area (mm²)"
    assert metric_label("param_hbm_bandwidth_bytes_per_s") == "param hbm bandwidth (B/s)"
    assert metric_label("cost_usd") == "cost (USD)"


def test_pareto_front_small_cases():
    """Dominated points are off the front; maximising flips the direction; NaN rows are off."""
    pts = np.array([[1, 5], [2, 2], [3, 1], [3, 3], [4, 4], [np.nan, 0]])
    assert pareto_front(pts).tolist() == [True, True, True, False, False, False]
    assert pareto_front(pts, minimize=[False, False]).tolist() == [True, False, False, False, True, False]
    assert pareto_front(np.array([[1.0, 1.0], [1.0, 1.0]])).all()


def test_pareto_front_against_brute_force():
    """On random points the front is exactly the set no other point dominates."""
    rng = np.random.default_rng(7)
    pts = rng.random((200, 3))
    front = pareto_front(pts, minimize=[True, False, True])
    cost = pts * np.array([1, -1, 1])
    for i, p in enumerate(cost):
        dominated = any((q <= p).all() and (q < p).any() for q in cost)
        assert front[i] == (not dominated)


def test_pareto_display_highlights_the_front(ax):
    """The highlighted points are the front, sorted by x, and the axes carry units."""
    frame = pd.DataFrame({"area_mm2": [100, 200, 300, 150], "latency_s": [3.0, 1.0, 0.5, 4.0],
                          "name": list("abcd")})
    d = ParetoDisplay.from_frame(frame, "area_mm2", "latency_s", label="name", ax=ax)
    assert d.front_["name"].tolist() == ["a", "b", "c"]
    assert d.is_front_.tolist() == [True, True, True, False]
    assert len(d.scatter_.get_offsets()) == 3
    assert ax.get_xlabel() == "area (mm²)" and ax.get_ylabel() == "latency (s)"


def test_heatmap_table_and_image(ax):
    """The pivot has one cell per (x, y); the image shows it; missing pairs are NaN."""
    frame = pd.DataFrame({"param_rows": [32, 64, 32, 64, 32], "param_clock_hz": [1e9, 1e9, 2e9, 2e9, 1e9],
                          "latency_s": [4.0, 2.0, 2.0, 1.0, 6.0]})
    d = HeatmapDisplay.from_frame(frame, "param_rows", "param_clock_hz", "latency_s", ax=ax)
    assert d.table_.loc[1e9, 32] == 5.0  # mean of the two rows of that cell
    np.testing.assert_array_equal(d.image_.get_array(), d.table_.to_numpy())
    assert d.colorbar_.ax.get_ylabel() == "latency (s)"
    sparse = HeatmapDisplay(frame.iloc[:3], "param_rows", "param_clock_hz", "latency_s")
    assert np.isnan(sparse.table_.loc[2e9, 64])


def test_heatmap_text_contrasts_with_its_cell(ax):
    """viridis: the brightest (yellow) cell gets black text, the darkest (purple) white."""
    frame = pd.DataFrame({"param_rows": [32, 64], "param_clock_hz": [1e9, 1e9], "latency_s": [1.0, 2.0]})
    HeatmapDisplay.from_frame(frame, "param_rows", "param_clock_hz", "latency_s", ax=ax)
    colors = {t.get_text(): t.get_color() for t in ax.texts}
    assert colors == {"1": "white", "2": "black"}


def test_missing_columns_are_config_errors():
    """A column that is not in the frame is named in the error."""
    with pytest.raises(hwsim.ConfigError, match="energy_per_token_j"):
        ParetoDisplay(pd.DataFrame({"latency_s": [1.0]}), "latency_s", "energy_per_token_j")
