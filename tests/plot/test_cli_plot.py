"""`hwsim plot ...` and `hwsim trace` write files; bad input is one clean error line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import hwsim
from hwsim.cli import main

SMALL = ["--model", "llama2-7b", "--n-layers", "2", "--batch", "4"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(("command", "suffix", "magic"), [
    (["plot", "roofline", "--arch", "h100-sxm", "--arch", "tpu-v4"], ".png", b"\x89PNG"),
    (["plot", "energy", "--by", "kind", "--per-token"], ".svg", b"<?xml"),
    (["plot", "timeline", "--arch", "dgx-h100", "--tp", "8"], ".png", b"\x89PNG"),
    (["plot", "compare", "--arch", "h100-sxm", "--arch", "wse2"], ".pdf", b"%PDF"),
])
def test_plot_writes_a_figure(tmp_path: Path, command: list[str], suffix: str, magic: bytes):
    """Each chart command writes a non-empty file of the asked type."""
    out = tmp_path / f"fig{suffix}"
    result = run(*command, *SMALL, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic) and out.stat().st_size > 1000
    assert f"wrote {out}" in result.output


def test_same_figure_same_bytes(tmp_path: Path):
    """No timestamps: drawing twice gives identical files (README images stay stable)."""
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    for out in (a, b):
        assert run("plot", "energy", *SMALL, "-o", str(out)).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_trace_writes_valid_json(tmp_path: Path):
    """`hwsim trace` writes a trace with a link lane for a tensor-parallel plan."""
    out = tmp_path / "trace.json"
    result = run("trace", "--arch", "dgx-h100", "--tp", "8", *SMALL, "-o", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    lanes = {ev["args"]["name"] for ev in doc["traceEvents"] if ev["name"] == "thread_name"}
    assert {"compute", "memory:hbm", "link:tp"} <= lanes
    assert all(ev["dur"] >= 0 and ev["ts"] >= 0 for ev in doc["traceEvents"] if ev["ph"] == "X")


@pytest.mark.parametrize("command", [["plot", "roofline"], ["plot", "timeline"], ["trace"]])
def test_chip_from_a_yaml_file(tmp_path: Path, command: list[str]):
    """A chip given as a YAML path (its name no preset's) is drawn on its own ceilings and lanes."""
    data = hwsim.load_arch("h100-sxm").model_dump(mode="json") | {"name": "my-chip"}
    chip_path = tmp_path / "my-chip.yaml"
    chip_path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / ("t.json" if command == ["trace"] else "fig.png")
    result = run(*command, "--arch", str(chip_path), *SMALL, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000


@pytest.mark.parametrize(("args", "message"), [
    (["plot", "roofline", "--arch", "no-such-chip", "-o", "{tmp}/r.png"], "no-such-chip: unknown"),
    (["plot", "energy", "-o", "{tmp}/missing/e.png"], "cannot write the figure"),
    (["plot", "timeline", "-o", "{tmp}/t.bmp"], "unknown figure type '.bmp'"),
    (["trace", "-o", "{tmp}/t.png"], "use a .json file name"),
    (["plot", "roofline", "--peak-dtype", "fp4", "-o", "{tmp}/r.png"], "has no peak for fp4"),
])
def test_bad_input_is_one_clean_line(tmp_path: Path, args: list[str], message: str):
    """Exit status 2, `error:` lines naming the problem, no traceback."""
    result = run(*[a.format(tmp=tmp_path) for a in args], *SMALL)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert all(line.startswith("error: ") for line in result.output.strip().splitlines())


def test_import_hwsim_does_not_import_matplotlib():
    """matplotlib is loaded only when something is drawn."""
    import subprocess

    code = ("import sys, hwsim, hwsim.cli, hwsim.plot, hwsim.trace; "
            "sys.exit(1 if 'matplotlib' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
