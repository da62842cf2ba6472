"""The result of a sweep: the rows, with the spec that made them, and analysis helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hwsim.errors import ConfigError
from hwsim.sweep import analysis
from hwsim.sweep.spec import SweepSpec


@dataclass(frozen=True)
class SweepResult:
    """Every row of a sweep (one per point and workload) and the spec behind them.

    Attributes
    ----------
    frame : pandas.DataFrame
        ``point_id``, ``workload``, ``param_<dotted.path>`` per parameter, the metrics
        (``latency_s``, ``energy_j``, ``energy_per_token_j``, ``tokens_per_s``,
        ``power_w``, ``compute_utilization``, ``area_mm2``, ``chip_cost_usd``,
        ``cost_per_mtok_usd``, ``published_ppl_delta``: the published WikiText-2
        perplexity change of the point's model and precision scheme, a lookup that is
        None where no paper reports it), ``bound`` and ``error`` (None, or why the point was
        rejected or failed).
    spec : SweepSpec
    sweep_id : str
        Identity of the sweep (hash of the canonical spec and mode).
    directory : Path or None
        Where the rows are persisted.
    """

    frame: pd.DataFrame
    spec: SweepSpec
    sweep_id: str
    directory: Path | None = None

    @classmethod
    def load(cls, directory: str | Path) -> SweepResult:
        """Read a persisted sweep (complete or not) from its results directory.

        Raises
        ------
        ConfigError
            If the directory holds no sweep, or its ``sweep.json`` is not one hwsim wrote.
        """
        from hwsim.sweep.spec import spec_from_dict
        from hwsim.sweep.store import MANIFEST, read_manifest, read_results

        manifest = read_manifest(directory)
        source = f"{Path(directory) / MANIFEST}"
        if "spec" not in manifest or "sweep_id" not in manifest:
            raise ConfigError([f"{source}: <root>: not a sweep manifest (no spec or sweep_id)"])
        spec = spec_from_dict(manifest["spec"], f"{source}: spec")
        return cls(read_results(directory), spec, str(manifest["sweep_id"]), Path(directory))

    @property
    def objectives(self) -> dict[str, str]:
        """The spec's objectives, name -> ``"min"`` or ``"max"``."""
        return dict(self.spec.objectives)

    def to_frame(self) -> pd.DataFrame:
        """A copy of every row, sorted by ``point_id`` and ``workload``."""
        return self.frame.copy()

    def feasible(self) -> pd.DataFrame:
        """Rows without an error."""
        return analysis.feasible(self.frame).copy()

    def _senses(self, objectives: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
        if objectives is None:
            return self.objectives
        if isinstance(objectives, Mapping):
            return dict(objectives)
        return {o: self.objectives.get(o, "min") for o in objectives}

    def pareto(self, objectives: Sequence[str] | Mapping[str, str] | None = None) -> pd.DataFrame:
        """Pareto-optimal feasible rows (per workload) over ``objectives`` (default: the
        spec's; a list takes each objective's sense from the spec, else ``min``)."""
        return analysis.pareto_front(self.frame, self._senses(objectives))

    def best(self, objective: str | None = None, where: Sequence[str] = (), sense: str | None = None
             ) -> pd.Series:
        """The feasible row with the best ``objective`` (default: the spec's first) among
        rows meeting every comparison in ``where`` (e.g. ``["area_mm2 <= 100"]``)."""
        objective = objective or next(iter(self.objectives))
        sense = sense or self.objectives.get(objective, "min")
        return analysis.best_point(self.frame, objective, sense, where)

    def sensitivity(self, objectives: Sequence[str] | None = None) -> pd.DataFrame:
        """Sensitivity of each objective to each swept parameter (see
        :func:`hwsim.sweep.analysis.sensitivity`); derived parameters follow from the
        swept ones, so they are not listed."""
        objectives = list(objectives or self.objectives)
        return analysis.sensitivity(self.frame, list(self.spec.parameters), objectives)
