"""Roofline chart: every op under its chip's compute and memory ceilings, log-log.

x is operational intensity in FLOP/byte, counted at the *home* level of each op: the
outermost memory level it moves bytes at (``flops / <home>_bytes``); y is the achieved
FLOP/s (``flops / latency_s``). Ceilings: one horizontal line per dtype peak
(``chip.peak_flops_per_s(dtype)``), one slanted line per memory level
(``bandwidth_bytes_per_s * intensity``, datasheet figures, up to the highest peak
drawn); ridge points, where a level's line meets a peak, are marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim.arch.model import Chip
from hwsim.arch.system import System
from hwsim.cost.model import level_bandwidth_bytes_per_s
from hwsim.errors import ConfigError
from hwsim.plot._common import MARKERS, as_results, color_map, get_axes, unique_labels
from hwsim.result import Result
from hwsim.trace import resolve_chip
from hwsim.workload.ops import COLLECTIVE_KINDS

#: Columns of :attr:`RooflineDisplay.points_`.
POINT_COLUMNS = ("arch", "pass", "segment", "op", "kind", "home_level", "flops", "home_bytes",
                 "latency_s", "intensity_flop_per_byte", "achieved_flops_per_s", "time_share")


def roofline_points(frame: pd.DataFrame, chip: Chip, arch: str | None = None) -> pd.DataFrame:
    """One roofline point per op of an op frame (:meth:`Result.to_frame`).

    Rows with the same pass kind (``decode3`` counts as ``decode``), segment and op name
    (the same op in every layer and step) are summed into one point. Collectives and
    ops without FLOP are left out (they have no place on a FLOP/s axis).
    ``time_share`` is the op's share of the summed latency of all rows of the frame.

    Returns
    -------
    DataFrame
        Columns :data:`POINT_COLUMNS`.
    """
    levels = [lv for lv in chip.level_names if f"{lv}_bytes" in frame]
    missing = {"op", "kind", "flops", "latency_s"} - set(frame.columns)
    if missing or not levels:
        need = sorted(missing) or [f"<level>_bytes for one of {', '.join(chip.level_names)}"]
        raise ConfigError([f"frame: missing columns {', '.join(need)} (expected Result.to_frame() rows)"])
    total_s = float(frame["latency_s"].sum()) or 1.0
    rows = frame[(frame["flops"] > 0) & ~frame["kind"].isin(COLLECTIVE_KINDS)]
    bytes_ = rows[[f"{lv}_bytes" for lv in levels]].to_numpy(dtype=float)
    # Outermost level with traffic: the last nonzero column (levels are innermost first).
    nonzero = bytes_ > 0
    outer = np.where(nonzero.any(axis=1), bytes_.shape[1] - 1 - np.argmax(nonzero[:, ::-1], axis=1), -1)
    keep = outer >= 0
    rows, outer, bytes_ = rows[keep], outer[keep], bytes_[keep]
    passes = rows["pass"].astype(str).str.replace(r"\d+$", "", regex=True) if "pass" in rows else ""
    data = pd.DataFrame({
        "pass": passes, "segment": rows.get("segment", ""), "op": rows["op"],
        "kind": rows["kind"], "home_level": [levels[i] for i in outer], "flops": rows["flops"],
        "home_bytes": bytes_[np.arange(len(outer)), outer], "latency_s": rows["latency_s"],
    })
    keys = ["pass", "segment", "op", "kind", "home_level"]
    points = data.groupby(keys, sort=False, as_index=False)[["flops", "home_bytes", "latency_s"]].sum()
    points.insert(0, "arch", arch or chip.name)
    points["intensity_flop_per_byte"] = points["flops"] / points["home_bytes"]
    points["achieved_flops_per_s"] = points["flops"] / points["latency_s"]
    points["time_share"] = points["latency_s"] / total_s
    return points[list(POINT_COLUMNS)]


def roofline_ceilings(
    chip: Chip, arch: str | None = None, dtypes: Sequence[str] | None = None
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Ceilings and ridge points of one chip.

    Returns
    -------
    ceilings : dict
        ``"<arch> <dtype> peak"`` -> peak FLOP/s, and ``"<arch> <level> bandwidth"`` ->
        bandwidth in bytes/s (the slanted ceiling's height at 1 FLOP/byte).
    ridges : dict
        ``"<arch> <level>/<dtype>"`` -> (intensity in FLOP/byte, FLOP/s) where the level's
        ceiling meets the dtype's.
    """
    arch = arch or chip.name
    chosen = list(dtypes) if dtypes is not None else list(chip.supported_dtypes)
    unknown = [d for d in chosen if d not in chip.supported_dtypes]
    if unknown:
        raise ConfigError([f"dtypes: {arch} has no peak for {', '.join(unknown)} "
                           f"(supported: {', '.join(chip.supported_dtypes)})"])
    peaks = {d: chip.peak_flops_per_s(d) for d in chosen}
    bws = {lv: level_bandwidth_bytes_per_s(chip, lv) for lv in chip.memory}
    ceilings = {f"{arch} {d} peak": p for d, p in peaks.items()}
    ceilings |= {f"{arch} {lv} bandwidth": bw for lv, bw in bws.items()}
    ridges = {f"{arch} {lv}/{d}": (p / bw, p) for lv, bw in bws.items() for d, p in peaks.items()}
    return ceilings, ridges


class RooflineDisplay:
    """Roofline of one or more architectures (see the module docstring for the physics).

    Build it with :meth:`from_results`, :meth:`from_result` or :meth:`from_frame`, which
    compute the data and call :meth:`plot`; or construct it from data and call
    :meth:`plot` yourself.

    Parameters
    ----------
    points : DataFrame
        Columns :data:`POINT_COLUMNS` (see :func:`roofline_points`), ``arch`` naming a
        key of ``chips``.
    chips : dict
        Label -> :class:`Chip` whose ceilings are drawn.
    dtypes : sequence of str, optional
        Dtype peaks to draw (default: every dtype each chip supports).

    Attributes
    ----------
    points_ : DataFrame
        One row per op point (:data:`POINT_COLUMNS`).
    ceilings_ : dict
        Ceiling name -> height: FLOP/s for ``"<arch> <dtype> peak"``, bytes/s (height
        at 1 FLOP/byte) for ``"<arch> <level> bandwidth"``.
    ridges_ : dict
        ``"<arch> <level>/<dtype>"`` -> (FLOP/byte, FLOP/s).
    figure_, ax_ : matplotlib Figure and Axes (after :meth:`plot`).
    scatters_ : dict
        Arch label -> the PathCollection of its points.
    lines_ : dict
        Ceiling name -> Line2D (dtypes with equal peaks share one line).
    """

    def __init__(self, points: pd.DataFrame, chips: dict[str, Chip],
                 dtypes: Sequence[str] | None = None) -> None:
        self.points_ = points.reset_index(drop=True)
        self.chips = dict(chips)
        self.dtypes = dtypes
        self.ceilings_: dict[str, float] = {}
        self.ridges_: dict[str, tuple[float, float]] = {}
        for label, chip in self.chips.items():
            ceilings, ridges = roofline_ceilings(chip, label, self._dtypes_of(chip))
            self.ceilings_ |= ceilings
            self.ridges_ |= ridges

    def _dtypes_of(self, chip: Chip) -> list[str] | None:
        if self.dtypes is None:
            return None
        return [d for d in self.dtypes if d in chip.supported_dtypes] or list(self.dtypes)

    @classmethod
    def from_results(cls, results: Result | Sequence[Result], *,
                     chips: Sequence[Chip | System | str | None] | None = None,
                     dtypes: Sequence[str] | None = None, ax: Any = None) -> RooflineDisplay:
        """Roofline of several results on one chart (one marker per architecture).

        ``chips`` gives the chip of each result when it is not the preset named by
        ``result.arch`` (a chip changed with ``with_overrides``).
        """
        items = as_results(results)
        given = list(chips) if chips is not None else [None] * len(items)
        if len(given) != len(items):
            raise ConfigError([f"chips: {len(given)} given for {len(items)} results"])
        labels = unique_labels(items)
        resolved = {lab: resolve_chip(r, c) for lab, r, c in zip(labels, items, given, strict=True)}
        points = pd.concat([roofline_points(r.to_frame(), resolved[lab], lab)
                            for lab, r in zip(labels, items, strict=True)], ignore_index=True)
        return cls(points, resolved, dtypes).plot(ax=ax)

    @classmethod
    def from_result(cls, result: Result, *, chip: Chip | System | str | None = None,
                    dtypes: Sequence[str] | None = None, ax: Any = None) -> RooflineDisplay:
        """Roofline of one result."""
        return cls.from_results([result], chips=[chip], dtypes=dtypes, ax=ax)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, arch_chip: Chip | System | str | Path, *,
                   arch: str | None = None, dtypes: Sequence[str] | None = None,
                   ax: Any = None) -> RooflineDisplay:
        """Roofline of a saved op frame (:meth:`Result.to_frame` rows) on ``arch_chip``
        (a Chip, System, preset name or YAML path); ``arch`` labels it."""
        from hwsim.arch.system import load_system

        chip = load_system(arch_chip).chip
        label = arch or chip.name
        return cls(roofline_points(frame, chip, label), {label: chip}, dtypes).plot(ax=ax)

    def plot(self, ax: Any = None) -> RooflineDisplay:
        """Draw on ``ax`` (a new figure if None); returns self."""
        fig, ax = get_axes(ax, figsize=(7.5, 5.0))
        self.figure_, self.ax_ = fig, ax
        ax.set_xscale("log")
        ax.set_yscale("log")
        x_lo, x_hi = self._x_range()
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(*self._y_range(x_lo))
        arch_colors = color_map(list(self.chips))
        single = len(self.chips) == 1
        self.lines_: dict[str, Any] = {}
        drawn: list[Chip] = []  # results on the same chip share one set of ceilings
        for i, (label, chip) in enumerate(self.chips.items()):
            if chip in drawn:
                continue
            drawn.append(chip)
            color = "0.25" if single else arch_colors[label]
            self._draw_ceilings(ax, i, label, chip, color, x_hi)
        self._draw_points(ax, arch_colors)
        ax.set_xlabel("operational intensity at the home memory level (FLOP/byte)")
        ax.set_ylabel("achieved performance (FLOP/s)")
        ax.grid(True, which="major", alpha=0.3)
        return self

    def _x_range(self) -> tuple[float, float]:
        xs = list(self.points_["intensity_flop_per_byte"]) + [i for i, _ in self.ridges_.values()]
        xs = [x for x in xs if np.isfinite(x) and x > 0] or [1.0]
        return 10 ** np.floor(np.log10(min(xs)) - 0.5), 10 ** np.ceil(np.log10(max(xs)) + 0.5)

    def _y_range(self, x_lo: float) -> tuple[float, float]:
        peaks = [v for k, v in self.ceilings_.items() if k.endswith(" peak")]
        lows = [v * x_lo for k, v in self.ceilings_.items() if k.endswith(" bandwidth")]
        ys = [y for y in list(self.points_["achieved_flops_per_s"]) + lows if np.isfinite(y) and y > 0]
        return min(ys) / 3, max(peaks) * 3

    def _peaks(self, label: str) -> dict[str, float]:
        prefix = f"{label} "
        return {k.removeprefix(prefix).removesuffix(" peak"): v for k, v in self.ceilings_.items()
                if k.startswith(prefix) and k.endswith(" peak")}

    def _draw_ceilings(self, ax: Any, index: int, label: str, chip: Chip, color: str, x_hi: float) -> None:
        x_lo = ax.get_xlim()[0]
        peaks = self._peaks(label)
        top, low = max(peaks.values()), min(peaks.values())
        by_height: dict[float, list[str]] = {}
        for dtype, peak in peaks.items():
            by_height.setdefault(peak, []).append(dtype)
        name = "" if len(self.chips) == 1 else f"{label} "
        for peak, names in by_height.items():
            (line,) = ax.plot([x_lo, x_hi], [peak, peak], color=color, lw=1.2)
            ax.text(x_hi / 10 ** (1.5 * index), peak, f" {name}{'/'.join(names)} ", color=color, fontsize=7,
                    ha="right", va="bottom")
            for dtype in names:
                self.lines_[f"{label} {dtype} peak"] = line
        for level in chip.level_names:
            bw = self.ceilings_[f"{label} {level} bandwidth"]
            (line,) = ax.plot([x_lo, top / bw], [bw * x_lo, top], color=color, lw=1.0, ls="--")
            self.lines_[f"{label} {level} bandwidth"] = line
            # Label the slanted line below the lowest peak, rotated to its slope on screen.
            y_text = low / 4 / 10 ** (1.2 * index)  # each arch's labels a step further down
            ends = [(y_text / bw, y_text), (y_text * 10 / bw, y_text * 10)]
            (x0, y0), (x1, y1) = ax.transData.transform(ends)
            ax.text(y_text / bw, y_text, f"{name}{level} {bw / 1e12:.3g} TB/s ", color=color, fontsize=7,
                    rotation=np.degrees(np.arctan2(y1 - y0, x1 - x0)), rotation_mode="anchor",
                    ha="right", va="bottom", bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.3})
        ridge = [v for k, v in self.ridges_.items() if k.startswith(f"{label} ")]
        ax.plot([i for i, _ in ridge], [p for _, p in ridge], ls="none", marker="o", ms=4,
                mfc="white", mec=color, zorder=3)

    def _draw_points(self, ax: Any, arch_colors: dict[str, str]) -> None:
        from matplotlib.lines import Line2D

        kinds = color_map(sorted(self.points_["kind"].unique()))
        self.scatters_: dict[str, Any] = {}
        markers = {lab: MARKERS[i % len(MARKERS)] for i, lab in enumerate(self.chips)}
        for label in self.chips:
            pts = self.points_[self.points_["arch"] == label]
            self.scatters_[label] = ax.scatter(
                pts["intensity_flop_per_byte"], pts["achieved_flops_per_s"],
                s=12 + 500 * pts["time_share"], c=[kinds[k] for k in pts["kind"]],
                marker=markers[label], alpha=0.8, edgecolors="black", linewidths=0.4, zorder=4)
        handles = [Line2D([], [], ls="none", marker="o", color=c, label=k) for k, c in kinds.items()]
        if len(self.chips) > 1:
            handles += [Line2D([], [], ls="none", marker=markers[lab], mfc="white", mec=arch_colors[lab],
                               label=lab) for lab in self.chips]
        ax.legend(handles=handles, fontsize=7, loc="lower right", ncol=2 if len(handles) > 8 else 1,
                  title="op kind (size: time share)" if len(self.chips) == 1 else
                  "op kind / arch (size: time share)", title_fontsize=7)

