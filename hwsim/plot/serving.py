"""Charts of serving runs (:func:`hwsim.serve`): latency CDFs, throughput against latency
over arrival rates, and KV-cache / batch / queue timelines per replica.

Each display computes from :class:`~hwsim.engine.serve.result.ServeResult` objects
(``from_results`` / ``from_result``) or from the frames a run stores (``from_frame``:
``ServeResult.requests``, ``ServeResult.iterations``, or rows of ``ServeResult.metrics``
as ``hwsim serve -o DIR`` writes them), and draws with ``plot(ax=None)``. The latency
definitions are those of :mod:`hwsim.engine.serve.metrics` (TTFT, TPOT over requests,
E2E).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hwsim.engine.serve.result import ServeResult
from hwsim.errors import ConfigError
from hwsim.plot._common import MARKERS, check_columns, color_map, get_axes
from hwsim.plot.timeline import time_unit
from hwsim.serve_trace import server_name, server_names

#: Request-frame columns drawn by :class:`LatencyCDFDisplay` by default, one panel each.
LATENCY_METRICS = ("ttft_s", "tpot_s", "e2e_s")
#: Iteration quantities drawn by :class:`ServingTimelineDisplay` by default, one panel each.
TIMELINE_QUANTITIES = ("kv_usage_pct", "batch_size", "queue_len")

_LATENCY_NAMES = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E", "itl": "inter-token latency",
                  "itl_max": "worst inter-token gap", "queue": "queueing delay"}
_QUANTITY_LABELS = {"kv_usage_pct": "KV cache used (% of blocks)", "batch_size": "batch size (requests)",
                    "queue_len": "queue length (requests)", "kv_blocks_used": "KV blocks used (blocks)",
                    "n_prefill_tokens": "prefill tokens (tokens)",
                    "n_decode_tokens": "decode tokens (tokens)", "energy_j": "energy per iteration (J)"}
_THROUGHPUT_LABELS = {"output_tokens_per_s": "output throughput (tokens/s)",
                      "total_tokens_per_s": "total throughput (tokens/s)",
                      "output_tokens_per_s_per_chip": "output throughput per chip (tokens/s)",
                      "requests_per_s": "throughput (requests/s)",
                      "goodput_requests_per_s": "goodput (requests/s)",
                      "goodput_output_tokens_per_s": "goodput (output tokens/s)"}


def latency_name(metric: str) -> str:
    """``ttft_s`` -> ``TTFT``; unknown names are returned without their ``_s``."""
    return _LATENCY_NAMES.get(metric.removesuffix("_s"), metric.removesuffix("_s").replace("_", " "))


def empirical_cdf(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """The finite ``values`` sorted, and the fraction of them at or below each."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    x = x[np.isfinite(x)]
    return x, np.arange(1, x.size + 1, dtype=np.float64) / max(x.size, 1)


def _results(results: ServeResult | Sequence[ServeResult]) -> list[ServeResult]:
    items = [results] if isinstance(results, ServeResult) else list(results)
    if not items:
        raise ConfigError(["results: nothing to plot (an empty list of serving results)"])
    return items


def _rate_text(result: ServeResult) -> str:
    rate = result.requests_in.mean_rate_per_s
    return "offline" if math.isnan(rate) else f"{rate:.3g} req/s"


def run_labels(results: Sequence[ServeResult], *, with_rate: bool = True) -> list[str]:
    """A label per run: the parts (arch, model, scheduler, plan, arrival rate) that differ
    between the runs, the arch alone when none do; ``with_rate=False`` leaves the rate out,
    so runs of one configuration at several rates share a label (and a curve)."""
    parts = [[r.arch, r.model, r.scheduler, str(r.config.get("plan", ""))]
             + ([_rate_text(r)] if with_rate else []) for r in results]
    labels = _varying(parts)
    if with_rate and len(set(labels)) < len(labels):
        labels = [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    return labels


def summary_labels(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """A configuration label per run summary (``ServeResult.summary()`` or its JSON):
    the arch, model, scheduler and plan parts that differ between them."""
    return _varying([[str(s.get("arch", "")), str(s.get("model", "")), str(s.get("scheduler", "")),
                      str(s.get("config", {}).get("plan", ""))] for s in summaries])


def _varying(parts: list[list[str]]) -> list[str]:
    varying = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1] or [0]
    return [" ".join(p[i] for i in varying) for p in parts]


def _axes_list(ax: Any, n: int, figsize: tuple[float, float], rows: bool) -> tuple[Any, list[Any]]:
    """A figure and ``n`` axes: the given ones (one Axes when ``n == 1``) or new ones."""
    if ax is None:
        import matplotlib.pyplot as plt

        shape = (n, 1) if rows else (1, n)
        fig, axes = plt.subplots(*shape, figsize=figsize, layout="constrained", squeeze=False,
                                 sharex=rows)
        return fig, list(axes.ravel())
    given = list(np.atleast_1d(np.asarray(ax, dtype=object)).ravel())
    if len(given) != n:
        raise ConfigError([f"ax: {len(given)} axes given for {n} panels"])
    return given[0].figure, given


def _unit(values: Sequence[float]) -> tuple[str, float]:
    finite = [v for v in values if math.isfinite(v)]
    return time_unit(max(finite, default=0.0))


class LatencyCDFDisplay:
    """Cumulative distributions of per-request latencies, one panel per metric, one curve
    per run.

    Parameters
    ----------
    frame : DataFrame
        Request rows (``ServeResult.requests``) with the ``metrics`` columns; several runs
        stacked, told apart by ``label``. Requests that did not complete (NaN) are left out.
    metrics : sequence of str
        Request-frame columns in seconds (default :data:`LATENCY_METRICS`).
    label : str, optional
        Column naming the run of each row; None: one run.

    Attributes
    ----------
    curves_ : dict
        Metric -> run label -> ``(x_s, fraction)`` (:func:`empirical_cdf`).
    units_ : dict
        Metric -> time unit of its x axis (``s``, ``ms`` or ``µs``).
    figure_, axes_ : Figure and list of Axes; lines_ : metric -> label -> Line2D (after :meth:`plot`).
    """

    def __init__(self, frame: pd.DataFrame, metrics: Sequence[str] = LATENCY_METRICS,
                 label: str | None = None) -> None:
        check_columns(frame, [*metrics, *([label] if label else [])])
        self.metrics = tuple(metrics)
        groups = [("run", frame)] if label is None else list(frame.groupby(label, sort=False))
        self.curves_ = {m: {str(name): empirical_cdf(rows[m]) for name, rows in groups} for m in self.metrics}

    @classmethod
    def from_results(cls, results: ServeResult | Sequence[ServeResult], *,
                     labels: Sequence[str] | None = None, metrics: Sequence[str] = LATENCY_METRICS,
                     ax: Any = None) -> LatencyCDFDisplay:
        """Overlay the runs (labelled by :func:`run_labels` unless ``labels`` are given)."""
        items = _results(results)
        names = list(labels) if labels is not None else run_labels(items)
        if len(names) != len(items) or len(set(names)) != len(names):
            raise ConfigError([f"labels: {len(items)} distinct labels needed, got {names}"])
        frame = pd.concat([r.requests.assign(run=n) for r, n in zip(items, names, strict=True)],
                          ignore_index=True)
        return cls(frame, metrics, "run").plot(ax=ax)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, label: str | None = None,
                   metrics: Sequence[str] = LATENCY_METRICS, ax: Any = None) -> LatencyCDFDisplay:
        """CDFs of stored request rows (one run, or several told apart by ``label``)."""
        return cls(frame, metrics, label).plot(ax=ax)

    def plot(self, ax: Any = None) -> LatencyCDFDisplay:
        """Draw on ``ax`` (one Axes per metric; a new figure if None); returns self."""
        n = len(self.metrics)
        self.figure_, self.axes_ = _axes_list(ax, n, (3.6 * n + 0.8, 3.6), rows=False)
        labels = list(next(iter(self.curves_.values())))
        colors = color_map(labels)
        self.units_: dict[str, str] = {}
        self.lines_: dict[str, dict[str, Any]] = {}
        for axis, metric in zip(self.axes_, self.metrics, strict=True):
            curves = self.curves_[metric]
            unit, factor = _unit([float(x[-1]) for x, _ in curves.values() if x.size])
            self.units_[metric] = unit
            self.lines_[metric] = {}
            for name, (x, y) in curves.items():
                (line,) = axis.step(x * factor, y, where="post", color=colors[name], label=name)
                self.lines_[metric][name] = line
            for q in (0.5, 0.99):
                axis.axhline(q, color="#b0b0b0", linewidth=0.6, linestyle=":", zorder=0)
            axis.set_ylim(0, 1.02)
            axis.set_xlabel(f"{latency_name(metric)} ({unit})")
            axis.set_ylabel("fraction of requests")
            axis.grid(True, alpha=0.3)
        if len(labels) > 1 or labels != ["run"]:
            self.axes_[-1].legend(fontsize=7, loc="lower right")
        return self


class ThroughputLatencyDisplay:
    """Throughput against latency percentiles over runs at several arrival rates: one
    curve per configuration and percentile, points in order of throughput.

    Parameters
    ----------
    frame : DataFrame
        One row per run with ``x``, ``<metric>_p<pct>_s`` for each percentile, and
        ``label`` (rows of ``ServeResult.metrics``, or summary files, plus a label).
    metric : str
        ``ttft``, ``tpot``, ``e2e``, ``itl`` or ``queue``.
    percentiles : sequence of int
        Among 50, 90, 99 (what the metrics hold).
    x : str
        Throughput column (``output_tokens_per_s``, ``requests_per_s``, ``total_tokens_per_s``).
    label : str
        Column naming the configuration of each run.
    slo_s : float, optional
        A latency limit drawn as a horizontal line, in s.

    Attributes
    ----------
    points_ : DataFrame
        The rows drawn, sorted by label then ``x``.
    figure_, ax_; lines_ : (label, percentile) -> Line2D (after :meth:`plot`).
    """

    def __init__(self, frame: pd.DataFrame, metric: str = "ttft", percentiles: Sequence[int] = (50, 99),
                 x: str = "output_tokens_per_s", label: str = "label", slo_s: float | None = None) -> None:
        self.columns = [f"{metric}_p{p}_s" for p in percentiles]
        check_columns(frame, [x, label, *self.columns])
        self.metric, self.percentiles, self.x, self.label = metric, tuple(percentiles), x, label
        self.slo_s = slo_s
        self.points_ = frame.assign(**{label: frame[label].astype(str)}).sort_values(
            [label, x], kind="stable").reset_index(drop=True)

    @classmethod
    def from_results(cls, results: ServeResult | Sequence[ServeResult], *, metric: str = "ttft",
                     percentiles: Sequence[int] = (50, 99), x: str = "output_tokens_per_s",
                     labels: Sequence[str] | None = None, slo_s: float | None = None,
                     ax: Any = None) -> ThroughputLatencyDisplay:
        """Runs labelled by configuration (:func:`run_labels` without the rate) unless
        ``labels`` are given; runs with one label make one curve."""
        items = _results(results)
        names = list(labels) if labels is not None else run_labels(items, with_rate=False)
        if len(names) != len(items):
            raise ConfigError([f"labels: {len(names)} given for {len(items)} results"])
        frame = pd.DataFrame([{**r.metrics, "label": n} for r, n in zip(items, names, strict=True)])
        return cls(frame, metric, percentiles, x, "label", slo_s).plot(ax=ax)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, metric: str = "ttft", percentiles: Sequence[int] = (50, 99),
                   x: str = "output_tokens_per_s", label: str = "label", slo_s: float | None = None,
                   ax: Any = None) -> ThroughputLatencyDisplay:
        """Draw stored run summaries (one row per run)."""
        return cls(frame, metric, percentiles, x, label, slo_s).plot(ax=ax)

    def plot(self, ax: Any = None) -> ThroughputLatencyDisplay:
        """Draw on ``ax`` (a new figure if None); returns self."""
        from hwsim.plot.compare import metric_label

        fig, ax = get_axes(ax, figsize=(6.5, 4.2))
        self.figure_, self.ax_ = fig, ax
        values = self.points_[self.columns].to_numpy(dtype=np.float64).ravel().tolist()
        unit, factor = _unit(values + ([self.slo_s] if self.slo_s else []))
        colors = color_map(list(self.points_[self.label]))
        styles = ("-", "--", ":", "-.")
        self.lines_: dict[tuple[str, int], Any] = {}
        for name, rows in self.points_.groupby(self.label, sort=False):
            for i, (p, column) in enumerate(zip(self.percentiles, self.columns, strict=True)):
                (line,) = ax.plot(rows[self.x], rows[column] * factor, linestyle=styles[i % len(styles)],
                                  marker=MARKERS[i % len(MARKERS)], color=colors[str(name)], markersize=4,
                                  label=f"{name} p{p}")
                self.lines_[str(name), p] = line
        if self.slo_s:
            ax.axhline(self.slo_s * factor, color="#c44e52", linewidth=0.8, linestyle="--", label="SLO")
        ax.set_xlabel(_THROUGHPUT_LABELS.get(self.x) or metric_label(self.x))
        ax.set_ylabel(f"{latency_name(self.metric)} ({unit})")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        return self


def step_series(iterations: pd.DataFrame, column: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per server, a step line of ``column``: each iteration's value from its start to its
    end (or to the next iteration's start, where batches overlap in a pipeline), with a
    break (NaN) where the server was idle between iterations.

    Returns
    -------
    dict
        Server index -> ``(time_s, value)`` arrays to draw as a line.
    """
    frame = _with_usage(iterations)
    check_columns(frame, ["server", "start_s", "end_s", column])
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    server: Any
    for server, rows in frame.groupby("server", sort=True):
        rows = rows.sort_values("start_s", kind="stable")
        start = rows["start_s"].to_numpy(dtype=np.float64)
        value = rows[column].to_numpy(dtype=np.float64)
        after = np.r_[start[1:], np.inf]
        end = np.minimum(rows["end_s"].to_numpy(dtype=np.float64), after)
        broken = np.where(end < after, np.nan, value)
        x = np.column_stack([start, end, end]).ravel()[:-1]
        y = np.column_stack([value, value, broken]).ravel()[:-1]
        out[int(server)] = (x, y)
    return out


def _with_usage(iterations: pd.DataFrame) -> pd.DataFrame:
    if {"kv_blocks_used", "kv_blocks_total"} <= set(iterations.columns):
        total = iterations["kv_blocks_total"].to_numpy(dtype=np.float64)
        used = iterations["kv_blocks_used"].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return iterations.assign(kv_usage_pct=np.where(total > 0, used / total * 100, np.nan))
    return iterations


class ServingTimelineDisplay:
    """KV-cache usage, batch size and queue length over time: one panel per quantity, a
    step line per replica (from the iterations frame).

    Parameters
    ----------
    iterations : DataFrame
        ``ServeResult.iterations`` rows.
    quantities : sequence of str
        Iteration columns, or ``kv_usage_pct`` (blocks used over blocks, in %)
        (default :data:`TIMELINE_QUANTITIES`).
    names : mapping, optional
        Server index -> name (:func:`hwsim.serve_trace.server_names` of the run's config).

    Attributes
    ----------
    series_ : dict
        Quantity -> server name -> ``(time_s, value)`` (:func:`step_series`).
    time_unit_ : str
    figure_, axes_; lines_ : quantity -> server name -> Line2D (after :meth:`plot`).
    """

    def __init__(self, iterations: pd.DataFrame, quantities: Sequence[str] = TIMELINE_QUANTITIES,
                 names: Mapping[int, str] | None = None) -> None:
        self.quantities = tuple(quantities)
        self.span_s = float(iterations["end_s"].max()) if len(iterations) else 0.0
        self.series_ = {q: {server_name(names or {}, s): xy for s, xy in step_series(iterations, q).items()}
                        for q in self.quantities}

    @classmethod
    def from_result(cls, result: ServeResult, *, quantities: Sequence[str] = TIMELINE_QUANTITIES,
                    ax: Any = None) -> ServingTimelineDisplay:
        """Timelines of one run, replicas named after its pools."""
        return cls(result.iterations, quantities, server_names(result.config)).plot(ax=ax)

    @classmethod
    def from_frame(cls, iterations: pd.DataFrame, *, names: Mapping[int, str] | None = None,
                   quantities: Sequence[str] = TIMELINE_QUANTITIES, ax: Any = None) -> ServingTimelineDisplay:
        """Timelines of a stored iterations frame."""
        return cls(iterations, quantities, names).plot(ax=ax)

    def plot(self, ax: Any = None) -> ServingTimelineDisplay:
        """Draw on ``ax`` (one Axes per quantity, stacked; a new figure if None); returns self."""
        n = len(self.quantities)
        self.figure_, self.axes_ = _axes_list(ax, n, (9.0, 1.0 + 1.9 * n), rows=True)
        self.time_unit_, factor = time_unit(self.span_s)
        servers = list(dict.fromkeys(s for series in self.series_.values() for s in series))
        colors = color_map(servers)
        self.lines_: dict[str, dict[str, Any]] = {}
        for axis, q in zip(self.axes_, self.quantities, strict=True):
            self.lines_[q] = {}
            for server, (x, y) in self.series_[q].items():
                (line,) = axis.plot(x * factor, y, color=colors[server], linewidth=0.9, label=server)
                self.lines_[q][server] = line
            axis.set_ylabel(_QUANTITY_LABELS.get(q, q.replace("_", " ")), fontsize=8)
            axis.set_ylim(bottom=0)
            axis.grid(True, alpha=0.3)
        self.axes_[-1].set_xlabel(f"time ({self.time_unit_})")
        for axis in self.axes_:
            axis.set_xlim(0, self.span_s * factor or 1.0)
        if len(servers) > 1:
            self.axes_[0].legend(fontsize=7, loc="upper right")
        return self
