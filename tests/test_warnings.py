"""What a simulation simplifies is said: ``Result.warnings`` from lowering and costing,
printed by the CLI after the table (stderr), carried by ``--json``, refused by ``--strict``;
and ``bound`` names what limits an underused op instead of calling it compute."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

import hwsim
from hwsim.arch import with_overrides
from hwsim.cli import main

SMALL = ["--model", "llama2-7b", "--n-layers", "2"]


def _decode(sparsity: str | None = None) -> hwsim.Workload:
    return hwsim.load_workload("llama2-7b", phase="decode", n_layers=2, sparsity=sparsity)


@pytest.mark.parametrize(("arch", "pattern", "has"), [("tpu-v4", "2:4", "no sparsity unit"),
                                                      ("h100-sxm", "1:8", "it has 2:4")])
def test_a_sparsity_pattern_the_chip_lacks_is_a_warning(arch: str, pattern: str, has: str) -> None:
    """The warning names the pattern, the chip and the patterns it has; the GEMMs run dense."""
    result = hwsim.simulate(_decode(pattern), arch)
    (warning,) = result.warnings
    assert pattern in warning and arch in warning and has in warning and "dense" in warning
    dense = hwsim.simulate(_decode(), arch)
    assert result.latency_s == pytest.approx(dense.latency_s)


def test_a_supported_pattern_or_no_pattern_warns_nothing() -> None:
    assert hwsim.simulate(_decode("2:4"), "h100-sxm").warnings == ()
    assert hwsim.simulate(_decode(), "tpu-v4").warnings == ()


def test_lowering_warnings_reach_the_result_first() -> None:
    """Workload.warnings (what lowering assumed) come before the costing warnings."""
    workload = replace(_decode("2:4"), warnings=("lowering assumed something",))
    result = hwsim.simulate(workload, "tpu-v4")
    assert result.warnings[0] == "lowering assumed something" and len(result.warnings) == 2
    assert json.loads(result.to_json())["warnings"] == list(result.warnings)
    assert result.summary()["warnings"] == list(result.warnings)


def test_cli_prints_warnings_after_the_table_on_stderr() -> None:
    res = CliRunner().invoke(main, ["simulate", "--arch", "tpu-v4", *SMALL, "--sparsity", "2:4"])
    assert res.exit_code == 0, res.output
    assert "latency_ms" in res.stdout and "warning:" not in res.stdout
    assert res.stderr.startswith("warning: sparsity 2:4: tpu-v4")
    data = json.loads(CliRunner().invoke(main, ["simulate", "--arch", "tpu-v4", *SMALL, "--sparsity", "2:4",
                                                "--json"]).stdout)
    assert len(data["warnings"]) == 1


def test_strict_refuses_a_result_with_warnings() -> None:
    """--strict: exit 2 with the warning as an error line, no table; clean runs pass."""
    res = CliRunner().invoke(main, ["simulate", "--arch", "tpu-v4", *SMALL, "--sparsity", "2:4", "--strict"])
    assert res.exit_code == 2 and "latency_ms" not in res.stdout
    assert res.stderr.startswith("error: --strict: sparsity 2:4")
    ok = CliRunner().invoke(main, ["simulate", "--arch", "h100-sxm", *SMALL, "--sparsity", "2:4", "--strict"])
    assert ok.exit_code == 0, ok.output


def test_compare_strict_refuses_the_rows_with_warnings() -> None:
    res = CliRunner().invoke(main, ["compare", "--arch", "h100-sxm", "--arch", "tpu-v4", *SMALL,
                                    "--sparsity", "2:4", "--strict"])
    assert res.exit_code == 2
    tpu = next(line for line in res.stdout.splitlines() if line.startswith("tpu-v4"))
    assert "refused (--strict): sparsity 2:4" in tpu
    plain = CliRunner().invoke(main, ["compare", "--arch", "h100-sxm", "--arch", "tpu-v4", *SMALL,
                                      "--sparsity", "2:4"])
    assert plain.exit_code == 0 and "warning: tpu-v4: sparsity 2:4" in plain.stderr


# --- bound names what limits the op ----------------------------------------------------


def _no_memory_limit(chip: hwsim.Chip) -> hwsim.Chip:
    overrides: dict[str, object] = {f"memory.{n}.bandwidth_bytes_per_s": 1e18 for n in chip.memory}
    overrides |= {f"memory.{n}.ramp_s": 0.0 for n in chip.memory}
    return with_overrides(chip, overrides | {"kernel_overhead_s": 0.0, "launch_overhead_s": 0.0})


@pytest.mark.parametrize(("arch", "mkn", "bound"), [
    ("systolic-128", (1, 4096, 4096), "fill_drain"),   # one row streams per 128x128 fold
    ("systolic-128", (4096, 32, 32), "padding"),       # K = N = 32 use 1/16 of the 128 x 128 array
    ("h100-sxm", (64, 64, 64), "occupancy"),           # 8 tiles for 132 units
    ("h100-sxm", (8192, 8192, 8192), "compute"),
])
def test_bound_names_why_the_units_are_underused(arch: str, mkn: tuple[int, int, int], bound: str) -> None:
    """With memory and overheads out of the way, an op whose units sit mostly idle is not
    'compute' bound: it is named by its largest loss; a well-used array is compute."""
    chip = _no_memory_limit(hwsim.load_arch(arch))
    result = hwsim.simulate(hwsim.ops.gemm(*mkn), chip)
    assert result.bound == bound
    assert (result.compute_utilization >= 0.4) == (bound == "compute")


def test_the_gemv_of_the_issue_is_fill_drain_not_compute() -> None:
    """systolic-128 GEMV at 0.26 % utilisation (the issue's case) names fill and drain."""
    result = hwsim.simulate(hwsim.ops.gemm(1, 4096, 4096), "systolic-128")
    assert result.compute_utilization < 0.005 and result.bound == "fill_drain"
    assert result.to_frame()["bound"].iloc[0] == "fill_drain"
