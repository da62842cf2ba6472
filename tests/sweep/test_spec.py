"""Spec validation: every bad input is reported before any work starts, naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.errors import ConfigError
from hwsim.sweep import load_spec, spec_from_dict, sweep
from hwsim.sweep.check import check_spec
from tests.sweep.conftest import make_spec


def _problems(spec: dict, tmp_path: Path, **kwargs) -> list[str]:
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        sweep(spec, out, executor="serial", **kwargs)
    assert not out.exists(), "no work (not even the results directory) before validation"
    return info.value.problems


def _params(**params) -> dict:
    return make_spec(parameters=params, derived={})


def test_unknown_architecture_path_is_named_with_a_suggestion(tmp_path):
    """An unknown dotted path is named, with close matches."""
    lines = _problems(_params(**{"compute_units.rowz": [64]}), tmp_path)
    assert any("parameters.compute_units.rowz: unknown architecture field" in p and "compute_units.rows" in p
               for p in lines)


def test_value_rejected_by_the_architecture_names_its_index(tmp_path):
    """A value the chip schema rejects (rows must be > 0) names the path and index."""
    lines = _problems(_params(**{"compute_units.rows": [64, 0]}), tmp_path)
    assert any(p.startswith("<dict>: parameters.compute_units.rows.values[1]: 0 is rejected") for p in lines)


def test_range_bounds_checked_against_the_architecture(tmp_path):
    """A range's ends are tried on the chip: a negative bandwidth is named as .low."""
    spec = _params(**{"memory.dram.bandwidth_bytes_per_s": {"low": -1.0, "high": 1e11, "num": 3}})
    lines = _problems(spec, tmp_path)
    assert any("parameters.memory.dram.bandwidth_bytes_per_s.low" in p for p in lines)


@pytest.mark.parametrize(("param", "fragment"), [
    ([], "parameters.compute_units.rows: Value error, values is empty"),
    ({"low": 5, "high": 5}, "parameters.compute_units.rows: Value error, empty range"),
    ({"low": 1.2, "high": 1.8, "integer": True}, "holds no integer"),
    ({"values": [1], "low": 1, "high": 2}, "not both"),
])
def test_empty_or_ambiguous_parameter(tmp_path, param, fragment):
    """Empty value lists, empty ranges and values+range together are refused."""
    lines = _problems(_params(**{"compute_units.rows": param}), tmp_path)
    assert any(fragment.replace("Value error, ", "") in p for p in lines), lines


def test_no_parameters_is_an_empty_space(tmp_path):
    lines = _problems(make_spec(parameters={}, derived={}), tmp_path)
    assert any("parameters: " in p and "empty" in p for p in lines)


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"sampler": {"method": "grid", "n_points": 10}},
     "sampler: grid sampling takes every combination; n_points"),
    ({"sampler": {"method": "lhs"}}, "sampler: lhs sampling needs n_points"),
    ({"sampler": {"method": "sobol", "n_points": 8}}, "num (compute_units.rows"),
    ({"derived": {"compute_units.rows": "64"}}, "both sampled (parameters) and derived"),
    ({"objectives": {"speed": "max"}}, "objectives: unknown objective speed"),
    ({"objectives": {}}, "objectives: "),
])
def test_conflicting_or_missing_options(tmp_path, changes, fragment):
    """Conflicting sampler options, a parameter both sampled and derived, an unknown
    objective: each names its path."""
    spec = make_spec(**changes)
    if "sobol" in str(changes):
        spec["parameters"] = {"compute_units.rows": {"low": 32, "high": 256, "integer": True, "num": 3}}
        spec["derived"] = {}
    lines = _problems(spec, tmp_path)
    assert any(fragment in p for p in lines), lines


def test_grid_needs_num_on_ranges(tmp_path):
    spec = _params(**{"memory.dram.bandwidth_bytes_per_s": {"low": 1e10, "high": 1e11}})
    lines = _problems(spec, tmp_path)
    assert any("parameters.memory.dram.bandwidth_bytes_per_s: grid sampling needs num" in p for p in lines)


def test_derived_unknown_name_and_cycle(tmp_path):
    """A derived expression naming no parameter, and derived parameters in a cycle."""
    lines = _problems(make_spec(derived={"compute_units.cols": "16384 / rowz"}), tmp_path)
    assert any("derived.compute_units.cols: rowz is not a parameter" in p for p in lines)
    cyc = make_spec(derived={"compute_units.cols": "compute_units.count * 2",
                             "compute_units.count": "compute_units.cols / 2"})
    lines = _problems(cyc, tmp_path)
    assert any("cycle" in p for p in lines)


def test_constraints_must_be_comparisons_over_known_names(tmp_path):
    lines = _problems(make_spec(constraints=["area_mm2 + 1", "watts <= 3"]), tmp_path)
    assert any(p.startswith("<dict>: constraints[0]: ") and "not a comparison" in p for p in lines)
    assert any(p.startswith("<dict>: constraints[1]: unknown name watts") for p in lines)


def test_workload_options(tmp_path):
    """A swept workload option must exist, and must not also be fixed by a workload."""
    lines = _problems(_params(**{"workload.batchsize": [1, 2]}), tmp_path)
    assert any("parameters.workload.batchsize: unknown workload option 'batchsize'" in p for p in lines)
    spec = _params(**{"workload.n_layers": [1, 2]})
    lines = _problems(spec, tmp_path)
    assert any("conflicts with workloads[0].n_layers" in p for p in lines)


def test_search_needs_one_workload_and_trials_need_search(tmp_path):
    two = make_spec(workloads=[{"model": "llama2-7b", "n_layers": 1}, {"model": "llama2-7b", "n_layers": 2}])
    assert any("search optimises one workload" in p for p in _problems(two, tmp_path, search="nsga2"))
    assert any("--trials" in p for p in _problems(make_spec(), tmp_path, n_trials=5))


def test_yaml_errors_name_the_file_and_every_problem_at_once(tmp_path):
    """Loading from YAML: each line starts with the file; several problems together."""
    path = tmp_path / "bad.yaml"
    path.write_text("arch: systolic-128\nworkloads: [{model: llama2-7b}]\n"
                    "parameters:\n  compute_units.rowz: [1]\n  memory.sram.capacity_bytes: [0]\n"
                    "objectives: {latency_s: min}\n")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    lines = info.value.problems
    assert len(lines) == 2 and all(line.startswith(f"{path}: parameters.") for line in lines)


def test_yaml_reads_exponent_numbers_as_floats(tmp_path):
    """``5e10`` (no dot) is a number in a spec, as in architecture files."""
    path = tmp_path / "ok.yaml"
    path.write_text("arch: systolic-128\nworkloads: [{model: llama2-7b}]\n"
                    "parameters: {memory.dram.bandwidth_bytes_per_s: [5e10, 1e11]}\n"
                    "objectives: {latency_s: min}\n")
    assert load_spec(path).parameters["memory.dram.bandwidth_bytes_per_s"].values == [5e10, 1e11]


def test_identity_follows_the_spec():
    """Same spec, same identity; any change (or search vs sampling) changes it."""
    a, b = spec_from_dict(make_spec()), spec_from_dict(make_spec())
    c = spec_from_dict(make_spec(constraints=["power_w <= 10"]))
    assert a.sweep_id() == b.sweep_id() != c.sweep_id()
    assert a.sweep_id("sample") != a.sweep_id("search")
    swapped = make_spec()
    swapped["parameters"] = dict(reversed(swapped["parameters"].items()))
    assert spec_from_dict(swapped).sweep_id() != a.sweep_id(), "parameter order decides point ids"


def test_shipped_example_specs_are_valid():
    """Every spec in workloads/sweeps checks against its architecture."""
    folder = Path(__file__).resolve().parents[2] / "workloads" / "sweeps"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for path in files:
        spec = load_spec(path)
        check_spec(spec, str(path))

