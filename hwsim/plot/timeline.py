"""Timeline (Gantt) chart of a schedule: one lane per resource, ops as bars.

Lanes follow :mod:`hwsim.trace` (the same convention as the Perfetto export):
``compute``, ``memory:<level>`` (the op's bytes at that level over the level's
sustained bandwidth, from the op's start, cut at its end) and ``link:<group>`` for
collectives. Folded layers are expanded (:meth:`Result.to_frame`), so the chart spans
the whole latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.arch.model import Chip
from hwsim.arch.system import System, load_system
from hwsim.plot._common import color_map, get_axes
from hwsim.result import Result
from hwsim.trace import lane_order, op_frame, resolve_chip, timeline_bars

_TIME_UNITS = ((1.0, "s", 1.0), (1e-3, "ms", 1e3), (0.0, "µs", 1e6))


def time_unit(span_s: float) -> tuple[str, float]:
    """A readable unit for a time axis spanning ``span_s`` seconds: (name, factor from s)."""
    for threshold, name, factor in _TIME_UNITS:
        if span_s >= threshold:
            return name, factor
    return "µs", 1e6


class TimelineDisplay:
    """Ops on resource lanes over time.

    Parameters
    ----------
    bars : DataFrame
        :func:`hwsim.trace.timeline_bars` rows (``lane``, ``op``, ``kind``, ``start_s``,
        ``end_s``...).
    lanes : list of str, optional
        Lanes top to bottom (default: :func:`hwsim.trace.lane_order`).

    Attributes
    ----------
    bars_ : DataFrame
        The bars drawn, one row each.
    lanes_ : list of str
        Lane names, top to bottom.
    collections_ : dict
        Lane -> the ``broken_barh`` collection of its bars (one path per bar).
    time_unit_ : str
        Unit of the x axis (``s``, ``ms`` or ``µs``).
    figure_, ax_ : matplotlib Figure and Axes (after :meth:`plot`).
    """

    def __init__(self, bars: pd.DataFrame, lanes: list[str] | None = None) -> None:
        self.bars_ = bars.reset_index(drop=True)
        self.lanes_ = list(lanes) if lanes is not None else lane_order(self.bars_["lane"].unique())

    @classmethod
    def from_result(cls, result: Result, *, chip: Chip | System | str | None = None,
                    ax: Any = None) -> TimelineDisplay:
        """Timeline of a result's schedule (``chip``: see :func:`hwsim.trace.resolve_chip`)."""
        return cls.from_frame(op_frame(result), resolve_chip(result, chip), ax=ax)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, arch_chip: Chip | System | str | Path, *,
                   ax: Any = None) -> TimelineDisplay:
        """Timeline of a saved op frame (:meth:`Result.to_frame` rows) run on ``arch_chip``."""
        chip = load_system(arch_chip).chip
        bars = timeline_bars(frame, chip)
        return cls(bars, lane_order(bars["lane"].unique(), chip)).plot(ax=ax)

    def plot(self, ax: Any = None) -> TimelineDisplay:
        """Draw on ``ax`` (a new figure if None); returns self."""
        fig, ax = get_axes(ax, figsize=(10.0, 1.0 + 0.5 * max(len(self.lanes_), 2)))
        self.figure_, self.ax_ = fig, ax
        span_s = float(self.bars_["end_s"].max()) if len(self.bars_) else 0.0
        self.time_unit_, factor = time_unit(span_s)
        kinds = color_map(sorted(self.bars_["kind"].astype(str).unique()))
        self.collections_: dict[str, Any] = {}
        for row, lane in enumerate(self.lanes_):
            bars = self.bars_[self.bars_["lane"] == lane]
            widths = (bars["end_s"] - bars["start_s"]) * factor
            spans = list(zip(bars["start_s"] * factor, widths, strict=True))
            self.collections_[lane] = ax.broken_barh(
                spans, (row - 0.4, 0.8), facecolors=[kinds[str(k)] for k in bars["kind"]],
                edgecolor="white", linewidth=0.2)
        ax.set_yticks(range(len(self.lanes_)), self.lanes_)
        ax.set_ylim(len(self.lanes_) - 0.5, -0.5)
        ax.set_xlim(0, span_s * factor or 1.0)
        ax.set_xlabel(f"time ({self.time_unit_})")
        ax.set_ylabel("resource")
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=c, label=k) for k, c in kinds.items()], fontsize=7, title="op kind",
                  title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        return self
