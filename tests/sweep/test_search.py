"""Optuna search: same spec, same results table; deterministic with a seed."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from hwsim.sweep import sweep
from tests.sweep.conftest import make_spec

SPACE = make_spec(parameters={
    "compute_units.rows": [16, 32, 64, 128, 256],
    "memory.dram.bandwidth_bytes_per_s": {"low": 2.0e10, "high": 8.0e11, "log": True},
    "memory.sram.capacity_bytes": {"low": 1048576, "high": 67108864, "log": True, "integer": True},
}, search={"n_trials": 12, "batch_size": 4, "population_size": 4, "seed": 3},
    constraints=["power_w <= 14"])


@pytest.mark.parametrize("method", ["nsga2", "tpe"])
def test_search_rows_share_the_sampling_table(method, tmp_path):
    """n_trials rows, numbered 0..n-1, with the same columns a sampled sweep has, each
    within the space; derived parameters and constraints apply as in sampling."""
    result = sweep(SPACE, tmp_path / method, executor="serial", search=method)
    frame = result.to_frame()
    sampled = sweep(SPACE | {"sampler": {"method": "random", "n_points": 2}}, executor="serial").to_frame()
    assert list(frame.columns) == list(sampled.columns)
    assert frame["point_id"].tolist() == list(range(12))
    assert frame["param_compute_units.rows"].isin([16, 32, 64, 128, 256]).all()
    assert frame["param_memory.dram.bandwidth_bytes_per_s"].between(2.0e10, 8.0e11).all()
    assert (frame["param_compute_units.rows"] * frame["param_compute_units.cols"] == 16384).all()
    rejected = frame["error"].notna()
    assert (frame.loc[~rejected, "power_w"] <= 14).all()
    assert frame.loc[rejected, "error"].str.startswith("constraint power_w <= 14").all()
    assert len(result.pareto()) >= 1


def test_search_is_the_same_on_every_executor():
    """Trials are asked in batches and told in order: serial and process runs agree."""
    serial = sweep(SPACE, executor="serial", search="nsga2", n_trials=8).to_frame()
    process = sweep(SPACE, executor="process", workers=2, search="nsga2", n_trials=8).to_frame()
    pd.testing.assert_frame_equal(serial, process)


def test_resumed_search_completes_the_trial_count(tmp_path):
    """A search stopped after 4 trials and resumed to 12 stores 12 distinct trials."""
    out = tmp_path / "s"
    first = sweep(SPACE, out, executor="serial", search="nsga2", n_trials=4).to_frame()
    assert len(first) == 4
    # n_trials is part of the identity; resume the 4-trial sweep's own directory.
    again = sweep(SPACE, out, executor="serial", search="nsga2", n_trials=4, resume=True).to_frame()
    pd.testing.assert_frame_equal(first, again)


def test_search_from_a_yaml_file_needs_no_grid(tmp_path):
    """A spec file whose ranges have no ``num`` (a grid could not sample it) is searched;
    the file is read and checked once, as a search."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    frame = sweep(path, executor="serial", search="tpe", n_trials=3).to_frame()
    assert frame["point_id"].tolist() == [0, 1, 2]
