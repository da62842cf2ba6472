"""Pareto fronts and parameter heatmaps of any DataFrame (e.g. a sweep's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hwsim.errors import ConfigError
from hwsim.plot._common import check_columns, get_axes
from hwsim.plot.compare import metric_label
from hwsim.sweep.analysis import pareto_mask


def pareto_front(values: Any, minimize: Sequence[bool] | bool = True) -> np.ndarray:
    """Which rows of ``values`` (n points x k objectives) no other row dominates.

    A row dominates another when it is at least as good in every objective and better in
    one. ``minimize`` says per objective (or for all) whether smaller is better. Rows with
    a NaN are never on the front; duplicate points are all on it. A wrapper of
    :func:`hwsim.sweep.analysis.pareto_mask` that reports bad input as ``ConfigError``.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    pts = np.asarray(values, dtype=float)
    k = pts.shape[1] if pts.ndim == 2 else 0
    flags = np.asarray(minimize, dtype=bool)
    if flags.ndim == 0:
        flags = np.full(k, flags)
    try:
        return pareto_mask(pts, ["min" if m else "max" for m in flags])
    except ValueError as exc:
        raise ConfigError([f"values: {exc} (got shape {pts.shape})"]) from exc


class ParetoDisplay:
    """Points of two objectives with the non-dominated ones highlighted and joined.

    Parameters
    ----------
    frame : DataFrame
        Any rows, e.g. a sweep's (one per design point).
    x, y : str
        Objective columns (their unit suffix labels the axes).
    minimize : (bool, bool)
        Whether smaller is better for ``x`` and for ``y``.
    label : str, optional
        Column whose value annotates each front point.
    log : bool
        Log-log axes.

    Attributes
    ----------
    is_front_ : ndarray of bool
        Per row of ``frame``: on the front.
    front_ : DataFrame
        The front's rows, sorted by ``x``.
    figure_, ax_, scatter_, front_line_ : matplotlib objects (after :meth:`plot`).
    """

    def __init__(self, frame: pd.DataFrame, x: str, y: str, minimize: tuple[bool, bool] = (True, True),
                 label: str | None = None, log: bool = False) -> None:
        check_columns(frame, [x, y] + ([label] if label else []))
        self.frame = frame.reset_index(drop=True)
        self.x, self.y, self.label, self.log = x, y, label, log
        self.is_front_ = pareto_front(self.frame[[x, y]].to_numpy(dtype=float), minimize)
        self.front_ = self.frame[self.is_front_].sort_values(x, kind="stable")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, x: str, y: str, *, minimize: tuple[bool, bool] = (True, True),
                   label: str | None = None, log: bool = False, ax: Any = None) -> ParetoDisplay:
        """Compute the front of ``frame`` over ``x`` and ``y`` and draw it."""
        return cls(frame, x, y, minimize, label, log).plot(ax=ax)

    def plot(self, ax: Any = None) -> ParetoDisplay:
        """Draw on ``ax`` (a new figure if None); returns self."""
        fig, ax = get_axes(ax, figsize=(6.0, 4.5))
        self.figure_, self.ax_ = fig, ax
        rest = self.frame[~self.is_front_]
        ax.scatter(rest[self.x], rest[self.y], s=14, color="0.65", label="dominated")
        self.scatter_ = ax.scatter(self.front_[self.x], self.front_[self.y], s=30, color="#c44e52",
                                   zorder=3, label="Pareto front")
        (self.front_line_,) = ax.plot(self.front_[self.x], self.front_[self.y], color="#c44e52", lw=1.2)
        if self.label:
            for _, row in self.front_.iterrows():
                ax.annotate(str(row[self.label]), (row[self.x], row[self.y]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        if self.log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(metric_label(self.x))
        ax.set_ylabel(metric_label(self.y))
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        return self


class HeatmapDisplay:
    """One objective over a grid of two parameters.

    Parameters
    ----------
    frame : DataFrame
        Rows with columns ``x``, ``y`` (parameters) and ``value`` (objective).
    x, y, value : str
    agg : str
        How rows that share an (x, y) cell are combined (a pandas aggregation name).

    Attributes
    ----------
    table_ : DataFrame
        ``value`` per cell: index ``y`` values, columns ``x`` values, both sorted; NaN
        where no row has that pair.
    figure_, ax_, image_, colorbar_ : matplotlib objects (after :meth:`plot`).
    """

    def __init__(self, frame: pd.DataFrame, x: str, y: str, value: str, agg: str = "mean") -> None:
        check_columns(frame, [x, y, value])
        self.x, self.y, self.value = x, y, value
        table = frame.pivot_table(index=y, columns=x, values=value, aggfunc=agg, dropna=False)  # type: ignore[arg-type]
        self.table_ = table.sort_index().sort_index(axis=1)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, x: str, y: str, value: str, *, agg: str = "mean",
                   annotate: bool = True, cmap: str = "viridis", ax: Any = None) -> HeatmapDisplay:
        """Pivot ``frame`` and draw it."""
        return cls(frame, x, y, value, agg).plot(ax=ax, annotate=annotate, cmap=cmap)

    def plot(self, ax: Any = None, annotate: bool = True, cmap: str = "viridis") -> HeatmapDisplay:
        """Draw on ``ax`` (a new figure if None), each cell annotated with its value;
        returns self."""
        fig, ax = get_axes(ax, figsize=(6.0, 4.5))
        self.figure_, self.ax_ = fig, ax
        data = self.table_.to_numpy(dtype=float)
        self.image_ = ax.imshow(data, cmap=cmap, aspect="auto", origin="lower")
        self.colorbar_ = fig.colorbar(self.image_, ax=ax, label=metric_label(self.value))
        ax.set_xticks(range(data.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v)
                                             for v in self.table_.columns])
        ax.set_yticks(range(data.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v)
                                             for v in self.table_.index])
        ax.set_xlabel(metric_label(self.x))
        ax.set_ylabel(metric_label(self.y))
        if annotate and data.size <= 400:
            for (i, j), v in np.ndenumerate(data):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color=self._text_color(v))
        return self

    def _text_color(self, value: float) -> str:
        """Dark text on a bright cell, white on a dark one (relative luminance of the cell)."""
        red, green, blue, _ = self.image_.cmap(self.image_.norm(value))
        return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else "white"
