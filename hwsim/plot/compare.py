"""Comparison bars: a few headline metrics across architectures, one panel each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hwsim.errors import ConfigError
from hwsim.plot._common import as_results, check_columns, color_map, unique_labels
from hwsim.result import Result

#: Metrics drawn by default, one panel each.
DEFAULT_METRICS = ("latency_s", "tokens_per_s", "energy_per_token_j")

_LABELS = {
    "latency_s": "latency (s)", "tokens_per_s": "throughput (tokens/s)",
    "energy_per_token_j": "energy per token (J/token)", "energy_j": "energy (J)",
    "ttft_s": "time to first token (s)", "tpot_s": "time per output token (s)",
    "achieved_flops_per_s": "achieved (FLOP/s)", "compute_utilization": "compute utilization (fraction)",
}
_SUFFIX_UNITS = (("_flops_per_s", "FLOP/s"), ("_bytes_per_s", "B/s"), ("_per_s", "1/s"), ("_bytes", "B"),
                 ("_usd", "USD"), ("_mm2", "mm²"), ("_s", "s"), ("_j", "J"), ("_w", "W"))


def metric_label(column: str) -> str:
    """An axis label with the unit read from the column name (``latency_s`` -> ``latency (s)``)."""
    if column in _LABELS:
        return _LABELS[column]
    for suffix, unit in _SUFFIX_UNITS:
        if column.endswith(suffix):
            return f"{column.removesuffix(suffix).replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


class ComparisonDisplay:
    """One bar panel per metric, one bar per architecture (or any label).

    Parameters
    ----------
    frame : DataFrame
        One row per bar with a ``label`` column and the metric columns; rows of
        :meth:`Result.summary` (label ``arch``) or a sweep's frame of them.
    label : str
        Column naming the bars.
    metrics : sequence of str
        Metric columns, one panel each (default :data:`DEFAULT_METRICS`).

    Attributes
    ----------
    values_ : DataFrame
        Index: bar labels; columns: metrics.
    figure_ : Figure; axes_ : ndarray of Axes, one per metric (after :meth:`plot`).
    bars_ : dict
        Metric -> BarContainer.
    """

    def __init__(self, frame: pd.DataFrame, label: str = "arch",
                 metrics: Sequence[str] = DEFAULT_METRICS) -> None:
        check_columns(frame, [label, *metrics])
        self.values_ = frame.set_index(frame[label].astype(str))[list(metrics)].astype(float)
        self.metrics = tuple(metrics)

    @classmethod
    def from_results(cls, results: Result | Sequence[Result], *, metrics: Sequence[str] = DEFAULT_METRICS,
                     ax: Any = None) -> ComparisonDisplay:
        """Compare results (labelled by arch, with workload/phase where needed)."""
        items = as_results(results)
        frame = pd.DataFrame([r.summary() for r in items]).assign(label=unique_labels(items))
        return cls(frame, "label", metrics).plot(ax=ax)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, label: str = "arch", metrics: Sequence[str] = DEFAULT_METRICS,
                   ax: Any = None) -> ComparisonDisplay:
        """Compare the rows of a frame of summaries."""
        return cls(frame, label, metrics).plot(ax=ax)

    def plot(self, ax: Any = None) -> ComparisonDisplay:
        """Draw on ``ax``: a sequence of one Axes per metric (a new figure if None);
        returns self."""
        n = len(self.metrics)
        if ax is None:
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 1, 3.8), layout="constrained", squeeze=False)
            axes = axes[0]
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if len(axes) != n:
                raise ConfigError([f"ax: {len(axes)} axes given for {n} metrics"])
            fig = axes[0].figure
        self.figure_, self.axes_ = fig, axes
        colors = color_map(list(self.values_.index))
        self.bars_: dict[str, Any] = {}
        labels = list(self.values_.index)
        for axis, metric in zip(axes, self.metrics, strict=True):
            self.bars_[metric] = axis.bar(range(len(labels)), self.values_[metric].to_numpy(),
                                          color=[colors[lab] for lab in labels])
            axis.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 2 else 0,
                            ha="right" if len(labels) > 2 else "center")
            axis.set_ylabel(metric_label(metric))
            axis.grid(True, axis="y", alpha=0.3)
        return self
