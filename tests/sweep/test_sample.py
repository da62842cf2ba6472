"""Samplers: counts, bounds, determinism with a seed; derived parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsim.sweep import spec_from_dict
from hwsim.sweep.check import compile_spec
from hwsim.sweep.sample import grid_values, sample_points, unit_samples
from hwsim.sweep.spec import ParamSpec
from tests.sweep.conftest import make_spec

SPACE = {
    "compute_units.rows": [32, 64, 128, 256],
    "memory.dram.bandwidth_bytes_per_s": {"low": 5.0e10, "high": 8.0e11, "log": True},
    "memory.sram.capacity_bytes": {"low": 1000, "high": 5000, "integer": True},
}


def _points(method: str, n: int | None = None, seed: int = 0, params=None, derived=None):
    sampler = {"method": method, "seed": seed} | ({"n_points": n} if n else {})
    spec = spec_from_dict(make_spec(parameters=params or SPACE, derived=derived or {}, sampler=sampler))
    return sample_points(compile_spec(spec))


def test_grid_is_every_combination_in_order():
    """A grid is the product of each parameter's values, first parameter slowest."""
    params = {"compute_units.rows": [32, 64],
              "memory.dram.bandwidth_bytes_per_s": {"low": 1e10, "high": 1e12, "log": True, "num": 3}}
    pts = _points("grid", params=params)
    assert len(pts) == 6
    assert [p["compute_units.rows"] for p in pts] == [32, 32, 32, 64, 64, 64]
    bws = [p["memory.dram.bandwidth_bytes_per_s"] for p in pts[:3]]
    assert bws == pytest.approx([1e10, 1e11, 1e12])  # geometric spacing, ends included


def test_integer_grid_merges_duplicates_after_rounding():
    assert grid_values(ParamSpec(low=1, high=3, integer=True, num=5)) == [1, 2, 3]


@pytest.mark.parametrize("method", ["random", "lhs", "sobol"])
def test_samplers_count_bounds_and_determinism(method):
    """n_points points, each within its parameter's values or range (integers stay
    integers), identical for the same seed and different for another seed."""
    pts = _points(method, n=64, seed=7)
    assert len(pts) == 64
    for p in pts:
        assert p["compute_units.rows"] in SPACE["compute_units.rows"]
        assert 5.0e10 <= p["memory.dram.bandwidth_bytes_per_s"] <= 8.0e11
        cap = p["memory.sram.capacity_bytes"]
        assert isinstance(cap, int) and 1000 <= cap <= 5000
    assert pts == _points(method, n=64, seed=7)
    assert pts != _points(method, n=64, seed=8)


@pytest.mark.parametrize("method", ["lhs", "sobol"])
def test_low_discrepancy_samplers_cover_every_stratum(method):
    """LHS puts exactly one point in each of n equal slices of every dimension; a
    scrambled Sobol set of 2^k points does too (it is a (0, k, 1)-net per dimension)."""
    n = 32
    u = unit_samples(method, n, 3, seed=1)
    assert u.shape == (n, 3) and ((u >= 0) & (u < 1)).all()
    for d in range(3):
        assert sorted(np.floor(u[:, d] * n).astype(int).tolist()) == list(range(n))


def test_log_range_is_uniform_in_the_logarithm():
    """Half the log-uniform draws fall below the geometric mean of the ends."""
    params = {"memory.dram.bandwidth_bytes_per_s": {"low": 1e9, "high": 1e13, "log": True}}
    pts = _points("lhs", n=200, params=params)
    below = sum(p["memory.dram.bandwidth_bytes_per_s"] < 1e11 for p in pts)
    assert below == 100


def test_derived_parameters_keep_total_macs_constant():
    """cols = 16384 / rows keeps rows x cols constant; whole numbers become ints; a
    derived value may depend on another derived value."""
    derived = {"compute_units.cols": "16384 / compute_units.rows",
               "compute_units.flops_per_cycle.bf16": "2 * compute_units.rows * compute_units.cols"}
    pts = _points("grid", params={"compute_units.rows": [32, 64, 128, 256]}, derived=derived)
    for p in pts:
        assert p["compute_units.rows"] * p["compute_units.cols"] == 16384
        assert isinstance(p["compute_units.cols"], int)
        assert p["compute_units.flops_per_cycle.bf16"] == 32768


def test_derived_division_by_zero_is_recorded_not_raised():
    pts = _points("grid", params={"compute_units.rows": [0.0, 64]},
                  derived={"compute_units.cols": "16384 / compute_units.rows"})
    assert "ZeroDivisionError" in pts[0]["__error__"] and "__error__" not in pts[1]
    assert math.isclose(pts[1]["compute_units.cols"], 256)
