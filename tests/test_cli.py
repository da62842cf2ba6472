"""The ``hwsim`` command line: happy paths agree with the API, bad input exits 2 cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import hwsim
from hwsim import report
from hwsim.cli import main

SMALL = ["--model", "llama2-7b", "--n-layers", "2"]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def table_value(output: str, metric: str) -> str:
    """The value cell of ``metric`` in a two-column metric/value table."""
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == metric:
            return parts[-1]
    raise AssertionError(f"{metric} not in output:\n{output}")


def api_decode(arch: str, n_layers: int | None = 2, **kw: object) -> hwsim.Result:
    opts = {"batch": 8, "context_len": 2048, **kw}
    if n_layers is not None:
        opts["n_layers"] = n_layers
    return hwsim.simulate(hwsim.load_workload("llama2-7b", phase="decode", **opts), arch)


# simulate -----------------------------------------------------------------------------------

def test_simulate_json_matches_api() -> None:
    """simulate --json prints the same totals as hwsim.simulate called directly."""
    res = run("simulate", "--arch", "h100-sxm", *SMALL, "--batch", "8", "--context-len", "2048", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    api = api_decode("h100-sxm")
    assert data["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)
    assert data["energy_j"] == pytest.approx(api.energy_j, rel=1e-12)
    assert data["tokens_per_s"] == pytest.approx(api.tokens_per_s, rel=1e-12)
    assert data["bound"] == api.bound
    assert "ops" not in data


def test_simulate_table_reports_totals_with_units() -> None:
    """The simulate table shows latency in ms, tokens/s, J/token, bytes per level and the bound."""
    res = run("simulate", "--arch", "h100-sxm", *SMALL, "--batch", "8", "--context-len", "2048")
    assert res.exit_code == 0, res.output
    api = api_decode("h100-sxm")
    assert table_value(res.output, "latency_ms") == report.fmt(api.latency_s * 1e3)
    assert table_value(res.output, "tokens_per_s") == report.fmt(api.tokens_per_s)
    assert table_value(res.output, "energy_per_token_j") == report.fmt(api.energy_per_token_j)
    assert table_value(res.output, "hbm_gb") == report.fmt(api.bytes_by_level["hbm_bytes"] / 1e9)
    assert table_value(res.output, "energy_idle_j") == report.fmt(api.energy_breakdown_j["idle_j"])
    assert table_value(res.output, "bound") == api.bound
    for metric in ("energy_j", "achieved_tflops_per_s"):
        table_value(res.output, metric)
    # utilisation is a fraction everywhere (docs/conventions.md), as in the API
    assert table_value(res.output, "compute_utilization") == report.fmt(api.compute_utilization)


def test_simulate_ops_table_aggregates_layers() -> None:
    """--ops adds one row per op name whose count is the number of layers it ran in."""
    res = run("simulate", "--arch", "tpu-v4", *SMALL, "--ops")
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines() if line.strip()}
    header = rows["op"]
    assert header[:5] == ["op", "kind", "count", "latency_ms", "share_pct"]
    assert rows["qkv_proj"][header.index("count")] == "2"
    assert rows["lm_head"][header.index("count")] == "1"
    frame = api_decode("tpu-v4", batch=1).to_frame()
    expected = frame[frame.op == "attention"]["latency_s"].sum() * 1e3
    assert rows["attention"][header.index("latency_ms")] == report.fmt(float(expected))


def test_simulate_json_with_ops_lists_every_op_instance() -> None:
    """--json --ops includes one record per op instance, as Result.to_frame has."""
    res = run("simulate", "--arch", "h100-sxm", *SMALL, "--json", "--ops")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert len(data["ops"]) == len(api_decode("h100-sxm", batch=1).to_frame())


def test_simulate_request_reports_ttft_and_tpot() -> None:
    """A request shows time to first token and time per output token, as the API computes."""
    res = run("simulate", "--arch", "h100-sxm", *SMALL, "--phase", "request", "--prompt-len", "128",
              "--new-tokens", "3")
    assert res.exit_code == 0, res.output
    w = hwsim.load_workload("llama2-7b", phase="request", n_layers=2, prompt_len=128, new_tokens=3)
    api = hwsim.simulate(w, "h100-sxm")
    assert api.ttft_s is not None and api.tpot_s is not None
    assert table_value(res.output, "ttft_ms") == report.fmt(api.ttft_s * 1e3)
    assert table_value(res.output, "tpot_ms") == report.fmt(api.tpot_s * 1e3)


def test_simulate_accepts_arch_file_path(tmp_path: Path) -> None:
    """--arch takes a YAML path as well as a preset name, with the same result."""
    src = Path(hwsim.__file__).resolve().parents[1] / "arch_configs" / "tpu-v4.yaml"
    copy = tmp_path / "my-chip.yaml"
    copy.write_text(src.read_text())
    res = run("simulate", "--arch", str(copy), *SMALL, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["latency_s"] == pytest.approx(api_decode("tpu-v4", batch=1).latency_s)


# op -----------------------------------------------------------------------------------------

def test_op_gemm_json_matches_api() -> None:
    """op gemm --json agrees with hwsim.ops.gemm simulated directly."""
    res = run("op", "gemm", "--arch", "tpu-v4", "--m", "2048", "--k", "4096", "--n", "4096", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    api = hwsim.simulate(hwsim.ops.gemm(2048, 4096, 4096), "tpu-v4")
    assert data["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)
    assert data["flops"] == 2 * 2048 * 4096 * 4096
    assert len(data["ops"]) == 1 and data["ops"][0]["detail"] == api.to_frame()["detail"].iloc[0]


def test_op_gemm_table_shows_row() -> None:
    """op gemm prints latency, FLOP, TFLOP/s, per-level bytes, cycles, bound and the mapping."""
    res = run("op", "gemm", "--arch", "tpu-v4", "--m", "2048", "--k", "4096", "--n", "4096")
    assert res.exit_code == 0, res.output
    api = hwsim.simulate(hwsim.ops.gemm(2048, 4096, 4096), "tpu-v4")
    row = api.to_frame().iloc[0]
    assert table_value(res.output, "latency_us") == report.fmt(api.latency_s * 1e6)
    assert table_value(res.output, "achieved_tflops_per_s") == report.fmt(api.achieved_flops_per_s / 1e12)
    assert table_value(res.output, "hbm_mb") == report.fmt(api.bytes_by_level["hbm_bytes"] / 1e6)
    assert table_value(res.output, "compute_cycles") == report.fmt(float(row["compute_cycles"]))
    assert table_value(res.output, "bound") == row["bound"]
    assert str(row["detail"]) in res.output


@pytest.mark.parametrize(
    ("args", "workload"),
    [
        (["attention", "--batch", "4", "--n-heads", "32", "--n-kv-heads", "8", "--q-len", "1",
          "--kv-len", "1024", "--head-dim", "128"],
         lambda: hwsim.ops.attention(4, 32, 8, 1, 1024, 128)),
        (["attention", "--n-heads", "8", "--q-len", "256", "--kv-len", "256", "--no-causal",
          "--impl", "naive"],
         lambda: hwsim.ops.attention(1, 8, 8, 256, 256, 128, is_causal=False, impl="naive")),
        (["elementwise", "--kind", "rmsnorm", "--rows", "512", "--cols", "4096"],
         lambda: hwsim.ops.elementwise("rmsnorm", (512, 4096))),
        (["embedding", "--n-tokens", "16", "--vocab", "32000", "--dim", "4096"],
         lambda: hwsim.ops.embedding(16, 32000, 4096)),
    ],
)
def test_op_commands_match_api(args: list[str], workload: Callable[[], hwsim.Workload]) -> None:
    """op attention/elementwise/embedding print the latency hwsim.ops + simulate give."""
    res = run("op", *args, "--arch", "h100-sxm", "--json")
    assert res.exit_code == 0, res.output
    api = hwsim.simulate(workload(), "h100-sxm")
    assert json.loads(res.stdout)["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)
    table = run("op", *args, "--arch", "h100-sxm")
    assert table.exit_code == 0, table.output
    assert table_value(table.output, "latency_us") == report.fmt(api.latency_s * 1e6)


def test_op_rejects_non_positive_dimension() -> None:
    """A zero GEMM dimension is a ConfigError: exit 2, the dimension named, no traceback."""
    res = run("op", "gemm", "--arch", "tpu-v4", "--m", "0", "--k", "64", "--n", "64")
    assert res.exit_code == 2
    assert "error: gemm: m: must be a positive integer" in res.stderr
    assert "Traceback" not in res.output


# list ---------------------------------------------------------------------------------------

def test_list_archs_one_line_per_preset() -> None:
    """list archs shows every preset with its description, bf16 peak TFLOP/s and home memory
    in GiB (memory sizes are binary everywhere: plan, errors, list)."""
    res = run("list", "archs")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "bf16_peak_tflops_per_s" in lines[0] and "home_memory_gib" in lines[0]
    assert len(lines) == 1 + len(hwsim.list_archs())
    h100 = next(line for line in lines if line.startswith("h100-sxm "))
    chip = hwsim.load_arch("h100-sxm")
    assert report.fmt(chip.peak_flops_per_s("bf16") / 1e12) in h100
    assert report.fmt(chip.level_capacity_bytes("hbm") / 2**30) in h100
    assert chip.description in h100


def test_list_models_shows_params_and_layers() -> None:
    """list models shows each model's parameter count in billions and its layer count."""
    res = run("list", "models", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(hwsim.list_models())
    spec = hwsim.load_model_spec("llama2-7b")
    assert rows["llama2-7b"]["params_b"] == pytest.approx(spec.param_count() / 1e9)
    assert rows["llama2-7b"]["layers"] == 32
    table = run("list", "models")
    assert any(line.split()[:3] == ["llama2-7b", "6.738", "32"] for line in table.output.splitlines())


# compare ------------------------------------------------------------------------------------

def test_compare_defaults_are_the_readme_demo() -> None:
    """compare with no arguments: LLaMA-2-7B decode, batch 1, context 2048 on h100, tpu-v4, wse2."""
    res = run("compare")
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines()[1:]}
    header = rows.pop("arch")
    assert header == ["arch", "latency_ms", "tokens_per_s", "energy_per_token_j", "bound"]
    assert list(rows) == ["h100-sxm", "tpu-v4", "wse2"]
    for arch, row in rows.items():
        api = api_decode(arch, n_layers=None, batch=1)
        assert row[1:] == [report.fmt(api.latency_s * 1e3), report.fmt(api.tokens_per_s),
                           report.fmt(api.energy_per_token_j), api.bound]


def test_compare_json_one_record_per_arch() -> None:
    """compare --json gives each arch's summary, equal to the API's."""
    res = run("compare", "--arch", "h100-sxm", "--arch", "a100-sxm", *SMALL, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [d["arch"] for d in data] == ["h100-sxm", "a100-sxm"]
    assert data[1]["latency_s"] == pytest.approx(api_decode("a100-sxm", batch=1).latency_s, rel=1e-12)


def test_compare_keeps_going_when_an_arch_does_not_fit() -> None:
    """An arch that cannot hold the model gets a row naming why; the others still print; exit 0."""
    res = run("compare", "--arch", "h100-sxm", "--arch", "groq-lpu", "--arch", "tpu-v4")
    assert res.exit_code == 0, res.output
    with pytest.raises(hwsim.MappingError) as err:
        api_decode("groq-lpu", n_layers=None, batch=1)
    lines = res.output.splitlines()
    groq = next(line for line in lines if line.startswith("groq-lpu "))
    assert str(err.value) in groq
    assert lines[1].split()[-1] == "note"
    h100 = next(line for line in lines if line.startswith("h100-sxm "))
    assert report.fmt(api_decode("h100-sxm", n_layers=None, batch=1).latency_s * 1e3) in h100
    assert any(line.startswith("tpu-v4 ") for line in lines)
    data = json.loads(run("compare", "--arch", "groq-lpu", "--arch", "h100-sxm", "--json").stdout)
    assert data[0] == {"arch": "groq-lpu", "error": str(err.value)}
    assert data[1]["latency_s"] > 0


def test_compare_exits_2_when_no_arch_can_run() -> None:
    """If every arch fails, compare still prints why for each and exits 2."""
    res = run("compare", "--arch", "groq-lpu", "--arch", "no-such-chip")
    assert res.exit_code == 2
    assert "groq-lpu" in res.output and "no-such-chip" in res.output
    assert "Traceback" not in res.output


def test_compare_request_has_ttft_and_tpot_columns() -> None:
    """For requests, compare adds ttft_ms and tpot_ms columns."""
    res = run("compare", "--arch", "h100-sxm", *SMALL, "--phase", "request", "--new-tokens", "2",
              "--prompt-len", "64")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[1].split() == [
        "arch", "latency_ms", "ttft_ms", "tpot_ms", "tokens_per_s", "energy_per_token_j", "bound"]


# errors -------------------------------------------------------------------------------------

def test_malformed_yaml_arch_exits_2_naming_file(tmp_path: Path) -> None:
    """A malformed YAML arch file: exit 2, 'error:' with the file name on stderr, no traceback."""
    bad = tmp_path / "broken-chip.yaml"
    bad.write_text("name: x\n  memory: [\n")
    res = run("simulate", "--arch", str(bad), *SMALL)
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.startswith("error: ") and "broken-chip.yaml" in res.stderr
    assert "Traceback" not in res.output


def test_invalid_arch_field_names_dotted_path(tmp_path: Path) -> None:
    """A valid YAML arch with a bad field value: one error line naming file and dotted path."""
    src = Path(hwsim.__file__).resolve().parents[1] / "arch_configs" / "h100-sxm.yaml"
    bad = tmp_path / "neg.yaml"
    data = yaml.safe_load(src.read_text())
    data["memory"]["hbm"]["bandwidth_bytes_per_s"] = -1
    bad.write_text(yaml.safe_dump(data))
    res = run("simulate", "--arch", str(bad), *SMALL)
    assert res.exit_code == 2
    assert "neg.yaml" in res.stderr and "memory.hbm.bandwidth_bytes_per_s" in res.stderr
    assert all(line.startswith("error: ") for line in res.stderr.splitlines())


def test_unknown_model_exits_2_with_close_matches() -> None:
    """An unknown model preset exits 2 and suggests the close matches."""
    res = run("simulate", "--model", "llama2-7")
    assert res.exit_code == 2
    assert "error: " in res.stderr and "did you mean llama2-7b" in res.stderr
    assert "Traceback" not in res.output


def test_unknown_arch_exits_2_with_close_matches() -> None:
    """An unknown arch preset exits 2 and suggests the close matches."""
    res = run("op", "gemm", "--arch", "h100", "--m", "8", "--k", "8", "--n", "8")
    assert res.exit_code == 2
    assert "did you mean h100-sxm" in res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--batch", "-1"],
        ["simulate", "--context-len", "0"],
        ["simulate", "--phase", "serve"],
        ["simulate", "--sparsity", "2-4"],
        ["simulate", "--sparsity", "4:2"],
        ["simulate", "--dtype", "fp7"],
        ["simulate", "--batch", "many"],
        ["compare", "--batch", "-1"],
        ["list", "chips"],
        ["op", "elementwise", "--arch", "h100-sxm", "--kind", "relu", "--rows", "1", "--cols", "1"],
        ["op", "attention", "--arch", "h100-sxm", "--n-heads", "6", "--n-kv-heads", "4", "--q-len", "1",
         "--kv-len", "8"],
    ],
)
def test_bad_input_exits_2_without_traceback(args: list[str]) -> None:
    """Negative or zero sizes, unknown phases/dtypes/patterns and usage errors exit 2 cleanly."""
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output


def test_unsupported_dtype_is_a_mapping_error_exit_2() -> None:
    """A dtype the chip cannot compute in (fp8 on TPU v4) exits 2 with the reason."""
    res = run("simulate", "--arch", "tpu-v4", *SMALL, "--dtype", "fp8")
    assert res.exit_code == 2
    assert "fp8" in res.stderr


@pytest.mark.parametrize("module", ["hwsim", "hwsim.cli"])
def test_python_dash_m_runs_the_cli(module: str) -> None:
    """`python -m hwsim` and `python -m hwsim.cli` are the same command line."""
    proc = subprocess.run([sys.executable, "-m", module, "list", "models"], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "llama2-7b" in proc.stdout


def test_fmt_formats_cells() -> None:
    """Table cells: about four significant digits, scientific outside [1e-3, 1e6), '-' for None."""
    assert [report.fmt(x) for x in (0.0, 3.36, 901.68, 2.5e-5, 2.2e10, 7, None, True)] == [
        "0", "3.360", "901.7", "2.500e-05", "2.200e+10", "7", "-", "true"]


def test_validate_group_filter_and_unknown_group() -> None:
    """`hwsim validate --group` runs only matching cases; a group that matches nothing
    exits 2 naming the known groups, with no traceback."""
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", "--group", "training"])
    assert ok.exit_code == 0, ok.output
    assert "h100 training" in ok.output and "h100 gemm" not in ok.output
    bad = runner.invoke(main, ["validate", "--group", "nothing"])
    assert bad.exit_code == 2
    assert "no validation group" in bad.output and "Traceback" not in bad.output
