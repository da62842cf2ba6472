"""Pareto fronts (closed forms and brute force), best points, sensitivity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hwsim.errors import ConfigError
from hwsim.sweep.analysis import best_point, pareto_front, pareto_mask, sensitivity


def _brute(v: np.ndarray) -> np.ndarray:
    n = len(v)
    return np.array([not any((v[j] <= v[i]).all() and (v[j] < v[i]).any() for j in range(n))
                     for i in range(n)])


def test_two_objective_staircase():
    """On the line x + y = 4 every point is optimal; points above it are dominated."""
    v = np.array([[0, 4], [1, 3], [2, 2], [3, 1], [4, 0], [2, 3], [3, 3], [4, 4]])
    assert pareto_mask(v).tolist() == [True] * 5 + [False] * 3


def test_one_point_dominating_all():
    v = np.array([[5.0, 5.0, 5.0], [1.0, 1.0, 1.0], [1.0, 2.0, 1.0], [9.0, 0.5, 9.0]])
    assert pareto_mask(v).tolist() == [False, True, False, True]


def test_duplicates_stay_and_nan_never_is_on_the_front():
    v = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [np.nan, 0.0], [3.0, 3.0]])
    assert pareto_mask(v).tolist() == [True, True, True, False, False]


def test_max_sense_flips_an_objective():
    """Maximising throughput while minimising area: the corner (high, small) wins."""
    v = np.array([[10.0, 1.0], [20.0, 2.0], [15.0, 2.0], [5.0, 3.0]])  # (tokens_per_s, area)
    assert pareto_mask(v, ["max", "min"]).tolist() == [True, True, False, False]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_matches_brute_force(k):
    """Random integer points (many ties): the fast front equals the O(n^2) definition."""
    rng = np.random.default_rng(k)
    v = rng.integers(0, 6, size=(300, k)).astype(float)
    assert (pareto_mask(v) == _brute(v)).all()


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "point_id": [0, 1, 2, 3, 4],
        "workload": ["w"] * 5,
        "param_compute_units.rows": [32, 64, 128, 256, 512],
        "latency_s": [5.0, 4.0, 3.0, 2.0, 1.0],
        "area_mm2": [10.0, 20.0, 30.0, 40.0, 50.0],
        "energy_j": [1.0, 1.0, 2.0, 1.0, 3.0],
        "error": [None, None, None, None, "constraint area_mm2 <= 45 violated"],
    })


def test_front_and_best_use_feasible_rows_only():
    """The rejected point (fastest) is excluded from the front and from best."""
    frame = _frame()
    front = pareto_front(frame, {"latency_s": "min", "area_mm2": "min"})
    assert front["point_id"].tolist() == [3, 2, 1, 0]
    assert pareto_front(frame, {"latency_s": "min", "energy_j": "min"})["point_id"].tolist() == [3]
    assert best_point(frame, "latency_s")["point_id"] == 3
    assert best_point(frame, "latency_s", where=["area_mm2 <= 25"])["point_id"] == 1
    both = ["compute_units.rows >= 64", "area_mm2 < 35"]
    assert best_point(frame, "latency_s", where=both)["point_id"] == 2
    with pytest.raises(ConfigError, match="no feasible point with area_mm2 <= 5"):
        best_point(frame, "latency_s", where=["area_mm2 <= 5"])


def test_sensitivity_signs_and_a_parameter_without_effect():
    """Latency falls with rows (rho = -1), area rises (rho = +1); a constant objective
    has no correlation and no main effect."""
    frame = _frame().assign(energy_j=1.0)
    s = sensitivity(frame, ["compute_units.rows"], ["latency_s", "area_mm2", "energy_j"])
    s = s.set_index("objective")
    assert s.loc["latency_s", "spearman_rho"] == pytest.approx(-1.0)
    assert s.loc["area_mm2", "spearman_rho"] == pytest.approx(1.0)
    assert s.loc["latency_s", "main_effect_range"] == pytest.approx((5.0 - 2.0) / 3.5)
    assert np.isnan(s.loc["energy_j", "spearman_rho"]) and s.loc["energy_j", "main_effect_range"] == 0.0
