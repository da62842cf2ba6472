"""Serving displays draw exactly the data of the runs, from results and from stored frames."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import hwsim
from hwsim.cli import main
from hwsim.plot import LatencyCDFDisplay, ServingTimelineDisplay, ThroughputLatencyDisplay
from hwsim.plot.serving import empirical_cdf, run_labels, step_series

RATES_PER_S = (20.0, 80.0, 320.0)


def _serve(rate: float | None, **options: object) -> hwsim.ServeResult:
    requests = (hwsim.Requests.offline(30, 64, 8) if rate is None
                else hwsim.Requests.poisson(30, rate, 64, 8, seed=1))
    return hwsim.serve(requests, options.pop("arch", "h100-sxm"), n_layers=2, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sweep() -> list[hwsim.ServeResult]:
    """One configuration at three arrival rates."""
    return [_serve(rate) for rate in RATES_PER_S]


@pytest.fixture(scope="module")
def two_replicas() -> hwsim.ServeResult:
    return _serve(200.0, arch="dgx-h100", plan=hwsim.Plan(dp=2), max_num_seqs=4)


def test_empirical_cdf() -> None:
    """Sorted finite values; the fraction at or below each, ending at 1."""
    x, y = empirical_cdf([3.0, np.nan, 1.0, 2.0, 2.0])
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0] and y.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_latency_cdfs_overlay_the_runs(sweep: list[hwsim.ServeResult]) -> None:
    """One curve per run and metric; each is its requests' sorted latencies, in the axis unit."""
    d = LatencyCDFDisplay.from_results(sweep)
    labels = run_labels(sweep)
    assert len(set(labels)) == 3 and all("req/s" in lab for lab in labels)
    assert [a.get_xlabel().split()[0] for a in d.axes_] == ["TTFT", "TPOT", "E2E"]
    factor = {"s": 1.0, "ms": 1e3, "µs": 1e6}
    for metric, lines in d.lines_.items():
        for result, label in zip(sweep, labels, strict=True):
            x, _ = lines[label].get_data()
            expect = np.sort(result.requests[metric].dropna().to_numpy())
            np.testing.assert_allclose(np.asarray(x) / factor[d.units_[metric]], expect, rtol=1e-12)
    plt.close(d.figure_)


def test_latency_cdf_from_a_stored_frame(sweep: list[hwsim.ServeResult], ax) -> None:
    """A frame read back draws the same curve as the result; a wrong number of axes is refused."""
    frame = sweep[0].requests
    d = LatencyCDFDisplay.from_frame(frame, metrics=["ttft_s"], ax=ax)
    x, y = d.curves_["ttft_s"]["run"]
    assert np.array_equal(x, np.sort(frame["ttft_s"].to_numpy())) and y[-1] == 1.0
    with pytest.raises(hwsim.ConfigError, match="1 axes given for 3 panels"):
        LatencyCDFDisplay.from_frame(frame, ax=ax)
    with pytest.raises(hwsim.ConfigError, match="missing columns nope_s"):
        LatencyCDFDisplay.from_frame(frame, metrics=["nope_s"], ax=ax)


def test_throughput_latency_one_curve_per_configuration(sweep: list[hwsim.ServeResult]) -> None:
    """Runs of one configuration form one p50 and one p99 curve, points in order of throughput."""
    d = ThroughputLatencyDisplay.from_results(sweep, metric="ttft", slo_s=0.05)
    assert set(d.lines_) == {("h100-sxm", 50), ("h100-sxm", 99)}
    throughput = sorted(r.output_tokens_per_s for r in sweep)
    x, y = d.lines_["h100-sxm", 99].get_data()
    np.testing.assert_allclose(x, throughput, rtol=1e-12)
    by_x = {r.output_tokens_per_s: r.metrics["ttft_p99_s"] for r in sweep}
    scale = y[0] / by_x[throughput[0]]
    np.testing.assert_allclose(np.asarray(y) / scale, [by_x[t] for t in throughput], rtol=1e-12)
    assert d.ax_.get_xlabel() == "output throughput (tokens/s)" and d.ax_.get_ylabel().startswith("TTFT (")
    assert any(line.get_label() == "SLO" for line in d.ax_.get_lines())
    plt.close(d.figure_)


def test_throughput_latency_from_summaries(sweep: list[hwsim.ServeResult], ax) -> None:
    """Stored summaries (JSON) draw the same points as the results."""
    rows = [json.loads(r.to_json()) | {"label": "run"} for r in sweep]
    d = ThroughputLatencyDisplay.from_frame(pd.DataFrame(rows), metric="tpot", percentiles=(90,), ax=ax)
    expect = sorted((r.output_tokens_per_s, r.metrics["tpot_p90_s"]) for r in sweep)
    assert list(zip(d.points_["output_tokens_per_s"], d.points_["tpot_p90_s"], strict=True)) == expect
    x, _ = d.lines_["run", 90].get_data()
    assert list(x) == [t for t, _ in expect]


def test_step_series_closed_case() -> None:
    """A value holds over its iteration, is cut where the next one starts, breaks where idle."""
    frame = pd.DataFrame({"server": [0, 0, 0], "start_s": [0.0, 1.0, 1.5], "end_s": [1.0, 2.0, 3.0],
                          "batch_size": [2, 4, 8]})
    x, y = step_series(frame, "batch_size")[0]
    assert x.tolist() == [0.0, 1.0, 1.0, 1.0, 1.5, 1.5, 1.5, 3.0]
    assert y.tolist() == [2, 2, 2, 4, 4, 4, 8, 8]
    gap = frame.assign(start_s=[0.0, 2.0, 3.0], end_s=[1.0, 3.0, 4.0])
    _, y = step_series(gap, "batch_size")[0]
    assert np.isnan(y[2]) and not np.isnan(y[5])


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """The integral of a step line drawn as segments (NaN breaks carry nothing)."""
    dx = np.diff(x)
    flat = (y[:-1] == y[1:]) & np.isfinite(y[:-1])
    return float(np.sum(dx[flat] * y[:-1][flat]))


def test_timeline_lines_per_replica_keep_the_time_average(two_replicas: hwsim.ServeResult) -> None:
    """A line per replica per panel; the lines' time integral over busy time gives the
    run's duration-weighted mean batch size, and the KV panel peaks at the run's maximum."""
    d = ServingTimelineDisplay.from_result(two_replicas)
    assert all(set(lines) == {"replica 0", "replica 1"} for lines in d.lines_.values())
    area = sum(_area(*xy) for xy in d.series_["batch_size"].values())
    m = two_replicas.metrics
    assert area / m["busy_s"] == pytest.approx(m["batch_size_mean"], rel=1e-9)
    peak = max(np.nanmax(y) for _, y in d.series_["kv_usage_pct"].values())
    assert peak == pytest.approx(100 * m["kv_usage_max"], rel=1e-12)
    assert d.axes_[-1].get_xlabel() == f"time ({d.time_unit_})"
    assert d.axes_[0].get_ylabel() == "KV cache used (% of blocks)"
    plt.close(d.figure_)


def test_timeline_from_a_stored_frame(two_replicas: hwsim.ServeResult) -> None:
    """The iterations frame alone draws the same series, servers named by index."""
    fig, axes = plt.subplots(2, 1)
    d = ServingTimelineDisplay.from_frame(two_replicas.iterations,
                                          quantities=["queue_len", "n_decode_tokens"], ax=axes)
    assert d.axes_ == list(axes) and set(d.series_["queue_len"]) == {"replica 0", "replica 1"}
    plt.close(fig)


def test_serving_plot_commands(tmp_path: Path) -> None:
    """`hwsim plot latency-cdf|throughput-latency|serve-timeline` draw stored runs."""
    runner = CliRunner()
    small = ["--n-layers", "2", "--requests", "12", "--prompt-len", "32", "--output-len", "4"]
    for rate in ("20", "200"):
        res = runner.invoke(main, ["serve", *small, "--rate", rate, "-o", str(tmp_path / f"r{rate}")])
        assert res.exit_code == 0, res.output
    runs = [str(tmp_path / "r20"), str(tmp_path / "r200")]
    for command in (["latency-cdf", *runs], ["throughput-latency", *runs, "--slo-ms", "5"],
                    ["serve-timeline", runs[0]]):
        out = tmp_path / f"{command[0]}.png"
        res = runner.invoke(main, ["plot", *command, "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 1000
    res = runner.invoke(main, ["plot", "latency-cdf", str(tmp_path), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "not a serving run (no summary.json" in res.output
