"""``hwsim sweep`` end to end on a tiny spec."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.sweep import SweepResult
from tests.sweep.conftest import make_spec


def test_sweep_prints_its_pareto_front_and_persists_rows(tmp_path):
    """Rows land in -o; the summary and the Pareto front are printed; --resume of a
    finished sweep evaluates nothing and prints the same front."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(make_spec(objectives={"latency_s": "min", "power_w": "min"}),
                                   sort_keys=False))
    out = tmp_path / "out"
    run = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(out), "--executor", "serial"])
    assert run.exit_code == 0, run.output
    assert "12 rows, 12 feasible, 0 rejected or failed; 12 evaluated" in run.output
    result = SweepResult.load(out)
    front = result.pareto()
    assert "Pareto front over latency_s (min), power_w (min)" in run.output
    lines = run.output.split("Pareto front")[1].splitlines()[2:]
    assert [int(line.split()[0]) for line in lines] == front["point_id"].tolist()
    assert lines[0].split()[0] == str(result.best("latency_s")["point_id"])
    again = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(out), "--resume", "--no-progress"])
    assert again.exit_code == 0 and "; 0 evaluated" in again.output
    assert again.output.split("Pareto front")[1] == run.output.split("Pareto front")[1]


def test_bad_spec_is_an_error_line_not_a_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    bad = make_spec(parameters={"compute_units.rowz": [1]}, derived={})
    spec.write_text(yaml.safe_dump(bad))
    run = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(tmp_path / "o")])
    assert run.exit_code == 2
    assert f"error: {spec}: parameters.compute_units.rowz: unknown architecture field" in run.output
    assert "Traceback" not in run.output and not (tmp_path / "o").exists()


def test_conflicting_command_line_options(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(make_spec()))
    run = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(tmp_path / "o"), "--executor", "serial",
                                    "--scheduler", "tcp://127.0.0.1:1"])
    assert run.exit_code == 2 and "error: --scheduler: a scheduler is for the dask executor" in run.output
    assert not (tmp_path / "o").exists()
    run = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(tmp_path / "o"), "--trials", "5"])
    assert run.exit_code == 2 and "error: --trials: only a search" in run.output
