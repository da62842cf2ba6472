"""Energy breakdown: stacked bars by component, per architecture or per op kind.

Components are the keys of :attr:`Result.energy_breakdown_j` without ``_j``:
``compute``, one per memory level (innermost first), ``interconnect`` (multi-chip
plans) and ``idle`` (static power over the latency). Each bar's segments sum to the
bar's total: ``energy_j`` of the result with ``by="arch"``; with ``by="kind"`` the bars
of one result together sum to its ``energy_j``, each component being split over the op
kinds in proportion to the ops' own energies (idle in proportion to their time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from hwsim.errors import ConfigError
from hwsim.plot._common import as_results, component_color, get_axes, unique_labels
from hwsim.result import Result
from hwsim.workload.ops import op_label

Unit = Literal["j", "j_per_token"]
_UNIT_LABELS = {"j": "energy (J)", "j_per_token": "energy per token (J/token)"}
_NOT_COMPONENTS = ("energy_j", "energy_per_token_j")


def component_columns(frame: pd.DataFrame) -> list[str]:
    """The ``energy_<component>_j`` columns of a frame of summaries: compute first,
    memory levels in the order met, then interconnect and idle."""
    cols = [c for c in frame.columns if str(c).startswith("energy_") and str(c).endswith("_j")
            and c not in _NOT_COMPONENTS]
    rank = {"energy_compute_j": 0, "energy_interconnect_j": 2, "energy_idle_j": 3}
    return sorted(cols, key=lambda c: rank.get(c, 1))


def _kind_rows(result: Result, label: str | None) -> list[dict[str, Any]]:
    """``by="kind"`` rows of one result (see the module docstring)."""
    if result.schedule is None:
        raise ConfigError([f"{result.arch}: the result has no schedule to split by op kind"])
    schedule = result.schedule
    parts: dict[str, dict[str, float]] = {}
    time_s: dict[str, float] = {}
    for rec in schedule.records:
        kind, mult = op_label(rec.op), schedule.multiplicity(rec)
        row = parts.setdefault(kind, {})
        row["compute"] = row.get("compute", 0.0) + mult * rec.cost.compute_energy_j
        row["interconnect"] = row.get("interconnect", 0.0) + mult * rec.cost.link_energy_j
        for t, e in zip(rec.cost.traffic, rec.cost.level_energy_j, strict=True):
            row[t.level] = row.get(t.level, 0.0) + mult * e
        time_s[kind] = time_s.get(kind, 0.0) + mult * (rec.end_s - rec.start_s)
    rows: dict[str, dict[str, Any]] = {k: {"label": f"{label} {k}" if label else k, "kind": k,
                                           "arch": result.arch, "tokens": result.tokens} for k in parts}
    total_time_s = sum(time_s.values()) or 1.0
    for key, total_j in result.energy_breakdown_j.items():
        comp = key.removesuffix("_j")
        ops_j = sum(p.get(comp, 0.0) for p in parts.values())
        for kind, row in rows.items():
            share = time_s[kind] / total_time_s if comp == "idle" or ops_j == 0 else \
                parts[kind].get(comp, 0.0) / ops_j
            row[f"energy_{comp}_j"] = total_j * share
    return list(rows.values())


def energy_frame(results: Result | Sequence[Result], by: Literal["arch", "kind"] = "arch") -> pd.DataFrame:
    """Energy components of results, one row per bar.

    Returns
    -------
    DataFrame
        ``label``, ``arch``, ``kind`` (``by="kind"``), ``tokens`` and one
        ``energy_<component>_j`` column per component, in J.
    """
    items = as_results(results)
    labels = unique_labels(items)
    if by == "arch":
        rows = [{"label": lab, "arch": r.arch, "tokens": r.tokens,
                 **{f"energy_{k}": v for k, v in r.energy_breakdown_j.items()}}
                for lab, r in zip(labels, items, strict=True)]
    elif by == "kind":
        rows = [row for lab, r in zip(labels, items, strict=True)
                for row in _kind_rows(r, lab if len(items) > 1 else None)]
    else:
        raise ConfigError([f"by: expected 'arch' or 'kind', got {by!r}"])
    frame = pd.DataFrame(rows)
    comps = component_columns(frame)
    return frame[[c for c in frame.columns if c not in comps] + comps].fillna(0.0)


class EnergyDisplay:
    """Stacked energy bars, one segment per component.

    Parameters
    ----------
    frame : DataFrame
        One row per bar: a label column, ``energy_<component>_j`` columns in J and,
        for ``unit="j_per_token"``, ``tokens``. :func:`energy_frame` makes one;
        ``pd.DataFrame([r.summary() for r in results])`` (or a sweep's frame of
        summaries) is one too, labelled by ``arch``.
    label : str
        Column naming the bars (default ``"label"``, else ``"arch"``).
    unit : {"j", "j_per_token"}
        Bar heights in J, or in J per token (divided by ``tokens``).

    Attributes
    ----------
    values_ : DataFrame
        Index: bar labels; columns: components (``compute``, levels, ``interconnect``,
        ``idle``); values in ``unit``. Each row sums to the bar's height.
    figure_, ax_ : matplotlib Figure and Axes (after :meth:`plot`).
    bars_ : dict
        Component -> BarContainer.
    """

    def __init__(self, frame: pd.DataFrame, label: str | None = None, unit: Unit = "j") -> None:
        if unit not in _UNIT_LABELS:
            raise ConfigError([f"unit: expected 'j' or 'j_per_token', got {unit!r}"])
        label = label or ("label" if "label" in frame else "arch")
        comps = component_columns(frame)
        if label not in frame or not comps:
            raise ConfigError([f"frame: needs a {label!r} column and energy_<component>_j columns "
                               "(e.g. rows of Result.summary())"])
        values = frame.set_index(frame[label].astype(str))[comps].fillna(0.0).astype(float)
        if unit == "j_per_token":
            if "tokens" not in frame or (frame["tokens"] <= 0).any():
                raise ConfigError(["frame: unit='j_per_token' needs a positive 'tokens' column"])
            values = values.div(frame["tokens"].to_numpy(dtype=float), axis=0)
        values.columns = [c.removeprefix("energy_").removesuffix("_j") for c in comps]
        values.index.name = label
        self.values_ = values
        self.unit = unit

    @classmethod
    def from_results(cls, results: Result | Sequence[Result], *, by: Literal["arch", "kind"] = "arch",
                     unit: Unit = "j", ax: Any = None) -> EnergyDisplay:
        """Bars per result (``by="arch"``) or per op kind of each result (``by="kind"``)."""
        return cls(energy_frame(results, by), "label", unit).plot(ax=ax)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, label: str | None = None, unit: Unit = "j",
                   ax: Any = None) -> EnergyDisplay:
        """Bars from a saved frame (see the class parameters)."""
        return cls(frame, label, unit).plot(ax=ax)

    def plot(self, ax: Any = None) -> EnergyDisplay:
        """Draw on ``ax`` (a new figure if None); returns self."""
        fig, ax = get_axes(ax, figsize=(max(5.0, 0.6 * len(self.values_) + 3), 4.5))
        self.figure_, self.ax_ = fig, ax
        bottom = pd.Series(0.0, index=self.values_.index)
        self.bars_: dict[str, Any] = {}
        for i, comp in enumerate(self.values_.columns):
            heights = self.values_[comp]
            self.bars_[comp] = ax.bar(range(len(heights)), heights.to_numpy(), bottom=bottom.to_numpy(),
                                      color=component_color(comp, i - 1), label=comp, width=0.7)
            bottom = bottom + heights
        tilt = len(self.values_) > 3
        ax.set_xticks(range(len(self.values_)), list(self.values_.index), rotation=30 if tilt else 0,
                      ha="right" if tilt else "center")
        ax.set_ylabel(_UNIT_LABELS[self.unit])
        ax.legend(fontsize=8, title="component", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(True, axis="y", alpha=0.3)
        return self
