"""--precision, --weight-dtype, --kv-dtype on simulate and serve mirror the API."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import hwsim
from hwsim.cli import main

SMALL = ["--model", "llama2-7b", "--n-layers", "2", "--context-len", "512"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_simulate_precision_matches_api():
    """simulate --precision w4a16 --kv-dtype fp8 --json equals the API's result."""
    res = run("simulate", "--arch", "h100-sxm", *SMALL, "--precision", "w4a16", "--kv-dtype", "fp8", "--json")
    assert res.exit_code == 0, res.output
    api = hwsim.simulate(hwsim.load_workload("llama2-7b", n_layers=2, context_len=512, precision="w4a16",
                                             kv_dtype="fp8"), "h100-sxm")
    assert json.loads(res.stdout)["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)


def test_simulate_precision_fields_and_errors():
    """key=value fields parse; an unknown scheme is an error line, not a traceback."""
    fields = "scheme=w4a16,group_size=64,layers=0:bf16"
    ok = run("simulate", "--arch", "h100-sxm", *SMALL, "--precision", fields, "--json")
    assert ok.exit_code == 0, ok.output
    bad = run("simulate", "--arch", "h100-sxm", *SMALL, "--precision", "w3a7")
    assert bad.exit_code != 0 and "unknown scheme" in bad.output and "Traceback" not in bad.output


def test_serve_kv_dtype_doubles_blocks():
    """serve --kv-dtype fp8 --json reports twice the KV blocks of bf16."""
    args = ["serve", "--arch", "h100-sxm", "--model", "llama2-7b", "--n-layers", "2", "--requests", "4",
            "--prompt-len", "64", "--output-len", "4", "--json"]
    ref, fp8 = run(*args), run(*args, "--kv-dtype", "fp8")
    assert ref.exit_code == 0 and fp8.exit_code == 0, ref.output + fp8.output
    blocks = [json.loads(r.stdout)["config"]["pools"][0]["kv_blocks"] for r in (ref, fp8)]
    assert blocks[1] in (2 * blocks[0], 2 * blocks[0] + 1)


def test_list_precisions():
    """hwsim list precisions shows every scheme with its weight bits (w4a16: 4.125)."""
    res = run("list", "precisions", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["scheme"]: r for r in json.loads(res.stdout)}
    assert rows["w4a16"]["weight_bits"] == "4.125" and rows["nvfp4"]["weight_bits"] == "4.5"
