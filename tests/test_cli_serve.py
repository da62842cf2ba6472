"""``hwsim serve``: tables and JSON agree with :func:`hwsim.serve`, ``-o DIR`` round-trips
the frames, bad input is one ``error:`` line per problem with exit status 2."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

import hwsim
from hwsim import report
from hwsim.cli import main
from hwsim.cli.serve import ProgressBar, build_requests
from hwsim.serve_files import read_run

SMALL = ["--model", "llama2-7b", "--n-layers", "2", "--prompt-len", "64", "--output-len", "8"]
STREAM = ["--requests", "20", "--rate", "40", "--seed", "3"]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["serve", *args])


@pytest.fixture(scope="module")
def api_result() -> hwsim.ServeResult:
    """What the CLI's SMALL + STREAM options ask for, through the API."""
    return hwsim.serve(hwsim.Requests.poisson(20, 40.0, 64, 8, seed=3), "h100-sxm", model="llama2-7b",
                       n_layers=2)


def value(output: str, metric: str) -> str:
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == metric:
            return parts[-1]
    raise AssertionError(f"{metric} not in:\n{output}")


def test_table_matches_the_api(api_result: hwsim.ServeResult) -> None:
    """The tables show latencies in ms and the totals with units, equal to the API's numbers."""
    res = run(*SMALL, *STREAM)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1].split() == ["latency", "mean_ms", "p50_ms", "p90_ms", "p99_ms"]
    m = api_result.metrics
    row = next(line.split() for line in res.stdout.splitlines() if line.startswith("ttft "))
    assert row[1:] == [report.fmt(m[f"ttft_{s}_s"] * 1e3) for s in ("mean", "p50", "p90", "p99")]
    for metric in ("output_tokens_per_s", "duration_s", "energy_per_output_token_j", "average_power_w"):
        assert value(res.stdout, metric) == report.fmt(float(m[metric])), metric
    assert value(res.stdout, "n_completed") == "20"
    assert "20 requests from Requests.poisson" in res.stdout.splitlines()[0]
    # What the run approximated is said, as warnings, and nothing else goes to stderr.
    assert res.stderr.splitlines() == [f"warning: {w}" for w in api_result.warnings]


def test_json_is_the_summary(api_result: hwsim.ServeResult) -> None:
    """--json prints the API's summary and nothing else on stdout."""
    res = run(*SMALL, *STREAM, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data == json.loads(api_result.to_json())
    assert data["n_completed"] == 20 and data["config"]["options"]["n_layers"] == 2


def test_output_dir_round_trips(tmp_path: Path, api_result: hwsim.ServeResult) -> None:
    """-o writes the request and iteration frames and summary.json; they read back equal."""
    out = tmp_path / "run"
    res = run(*SMALL, *STREAM, "-o", str(out))
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"requests.parquet", "iterations.parquet", "summary.json"}
    requests, iterations, summary = read_run(out)
    pd.testing.assert_frame_equal(requests, api_result.requests)
    pd.testing.assert_frame_equal(iterations, api_result.iterations)
    assert summary["output_tokens_per_s"] == pytest.approx(api_result.output_tokens_per_s, rel=1e-12)
    csv = tmp_path / "csv"
    assert run(*SMALL, *STREAM, "-o", str(csv), "--csv").exit_code == 0
    requests_csv, iterations_csv, _ = read_run(csv)
    np.testing.assert_allclose(requests_csv["ttft_s"], api_result.requests["ttft_s"], rtol=1e-12)
    assert len(iterations_csv) == len(api_result.iterations)


def test_offline_and_slo() -> None:
    """No rate (or 0) is offline: every request arrives at t = 0; an SLO adds goodput."""
    res = run(*SMALL, "--requests", "6", "--rate", "0", "--slo-ttft-ms", "1000", "--slo-tpot-ms", "1000",
              "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["slo_met"] == 1.0 and data["slo_attainment"] == 1.0
    assert data["goodput_requests_per_s"] == pytest.approx(data["requests_per_s"])
    assert np.isnan(build_requests({"n_requests": 6}).mean_rate_per_s)
    assert (build_requests({"n_requests": 6, "rate_per_s": 0.0}).arrival_s == 0).all()


def test_profile_and_bursty_streams() -> None:
    """A profile draws lengths (an explicit length overrides one side); --cv makes gamma gaps."""
    chat = build_requests({"n_requests": 50, "profile": "chat", "output_len": 4, "rate_per_s": 2.0})
    assert len(set(chat.prompt_len.tolist())) > 10 and (chat.output_len == 4).all()
    bursty = build_requests({"n_requests": 2000, "rate_per_s": 10.0, "cv": 3.0, "seed": 1})
    gaps = np.diff(bursty.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.15)


def test_trace_csv(tmp_path: Path) -> None:
    """--trace serves a CSV (its rows sorted by arrival); --requests N keeps the first N."""
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_len,output_len\n0.5,32,4\n0.0,64,8\n0.25,16,2\n")
    res = run("--n-layers", "2", "--trace", str(path), "--requests", "2", "-o", str(tmp_path / "r"))
    assert res.exit_code == 0, res.output
    requests, _, _ = read_run(tmp_path / "r")
    assert requests["prompt_len"].tolist() == [64, 16] and requests["arrival_s"].tolist() == [0.0, 0.25]


def test_warnings_go_to_stderr() -> None:
    """What the run assumed is printed as `warning:` lines on stderr."""
    res = run(*SMALL, "--requests", "4", "--arch", "dgx-h100", "--tp", "2", "--json")
    assert res.exit_code == 0, res.output
    assert "warning: dgx-h100: the replicas use 2 of its 8 chips" in res.stderr
    assert json.loads(res.stdout)["n_chips"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--rate", "-1"], "--rate: must be a number of requests/s > 0"),
    (["--scheduler", "fcfs"], "serve: scheduler: unknown scheduler 'fcfs'"),
    (["--trace", "{tmp}/no_output.csv"], "missing column(s) output_len"),
    (["--trace", "{tmp}/no_output.csv", "--rate", "2", "--prompt-len", "8"],
     "--trace: the trace gives arrivals and lengths; drop --rate, --prompt-len"),
    (["--rate", "0", "--cv", "2"], "--cv: bursty arrivals need a --rate > 0"),
    (["--slo-ttft-ms", "0"], "--slo-ttft-ms: must be a number of milliseconds > 0"),
    (["--preemption", "drop"], "serve: preemption: Input should be 'recompute' or 'swap'"),
    (["--trace-out", "{tmp}/t.txt"], "use a .json file name"),
    # 200k tokens are beyond the model's context (and would outgrow its KV cache).
    (["--n-layers", "32", "--prompt-len", "200000", "--scheduler", "sarathi"],
     "200000 prompt + 128 output tokens exceed llama2-7b's context of 4096"),
])
def test_bad_input_is_one_clean_line(tmp_path: Path, args: list[str], message: str) -> None:
    """Exit status 2, only `error:` lines, one naming the problem, no traceback."""
    (tmp_path / "no_output.csv").write_text("arrival_s,prompt_len\n0,16\n")
    res = run("--n-layers", "2", "--requests", "3", *[a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output
    assert all(line.startswith("error: ") for line in res.stderr.strip().splitlines())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    """The bar counts every completed request, and draws only where stderr is a terminal."""
    requests = hwsim.Requests.offline(12, 32, 4)
    tty, pipe = _Terminal(), io.StringIO()
    with ProgressBar(len(requests), file=tty, delay_s=0.0, redraw_s=0.0) as bar_tty, \
            ProgressBar(len(requests), file=pipe, delay_s=0.0) as bar_pipe:
        hwsim.serve(requests, "h100-sxm", n_layers=2, max_num_seqs=5,
                    progress=lambda n: (bar_tty(n), bar_pipe(n)))
    assert bar_tty.done == bar_pipe.done == 12
    assert "serving" in tty.getvalue() and "12/12" in tty.getvalue()
    assert pipe.getvalue() == ""
