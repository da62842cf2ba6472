"""Helpers shared by the displays: axes, colours, result lists, saving.

matplotlib is imported inside functions only, so ``import hwsim.plot`` stays cheap and
works without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwsim.errors import ConfigError
from hwsim.result import Result

#: File types :func:`save_figure` writes.
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")

#: Colours of energy components (others cycle through :data:`_CYCLE`).
COMPONENT_COLORS = {"compute": "#4c72b0", "interconnect": "#8172b2", "idle": "#b0b0b0"}
_LEVEL_COLORS = ("#55a868", "#c4ad66", "#dd8452", "#c44e52", "#937860", "#64b5cd", "#da8bc3", "#8c564b")
_CYCLE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c",
          "#ccb974", "#64b5cd", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def get_axes(ax: Any = None, **subplot_kw: Any) -> tuple[Any, Any]:
    """``(figure, ax)``: the given axes and its figure, or a new pyplot figure."""
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, new_ax = plt.subplots(layout="constrained", **subplot_kw)
    return fig, new_ax


def new_figure(n_axes: int = 1, figsize: tuple[float, float] = (7.0, 4.5), stacked: bool = False
               ) -> tuple[Any, Any]:
    """A figure outside pyplot (nothing to close, no GUI backend) and its axes
    (one Axes, or an array of ``n_axes`` side by side, or one above the other sharing
    the x axis when ``stacked``); used by the CLI."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    shape = (n_axes, 1) if stacked else (1, n_axes)
    axes = fig.subplots(*shape, squeeze=True, sharex=stacked)
    return fig, axes


def as_results(results: Result | Sequence[Result]) -> list[Result]:
    """One result or several, as a non-empty list."""
    items = [results] if isinstance(results, Result) else list(results)
    if not items:
        raise ConfigError(["results: nothing to plot (an empty list of results)"])
    return items


def check_columns(frame: Any, columns: Sequence[str]) -> None:
    """Raise ConfigError naming the ``columns`` that ``frame`` lacks (and those it has)."""
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ConfigError([f"frame: missing columns {', '.join(missing)} "
                           f"(has {', '.join(map(str, frame.columns))})"])


def color_map(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name, in the order given."""
    return {name: _CYCLE[i % len(_CYCLE)] for i, name in enumerate(dict.fromkeys(names))}


def component_color(component: str, level_index: int) -> str:
    """Colour of an energy component (``compute``, a memory level, ``interconnect``, ``idle``)."""
    return COMPONENT_COLORS.get(component, _LEVEL_COLORS[level_index % len(_LEVEL_COLORS)])


def unique_labels(results: Sequence[Result]) -> list[str]:
    """A label per result: the arch name, with workload/phase/params added where needed
    to tell results apart."""
    labels = [r.arch for r in results]
    if len(set(labels)) == len(labels):
        return labels
    labels = [f"{r.arch} {r.workload} {r.phase}" for r in results]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]


def check_figure_path(path: str | Path) -> Path:
    """``path`` as a Path if its suffix is one :func:`save_figure` writes.

    Raises
    ------
    ConfigError
        For another suffix.
    """
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError([f"{path}: unknown figure type {path.suffix or '(none)'!r}; "
                           f"use one of {', '.join(FIGURE_SUFFIXES)}"])
    return path


def save_figure(figure: Any, path: str | Path, dpi: int = 150) -> Path:
    """Write ``figure`` to ``path`` (.png, .svg or .pdf) without timestamps or version
    stamps, so the same figure gives the same file.

    Raises
    ------
    ConfigError
        For an unknown suffix or a path that cannot be written.
    """
    import matplotlib

    path = check_figure_path(path)
    fmt = path.suffix.lower().lstrip(".")
    metadata: dict[str, Any] = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                                "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}[fmt]
    try:
        with matplotlib.rc_context({"svg.hashsalt": "hwsim"}):
            figure.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot write the figure ({exc.strerror or exc})"]) from None
    return path
