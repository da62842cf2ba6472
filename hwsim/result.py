"""Simulation results: immutable totals plus a per-operator frame built on demand."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from hwsim.engine.schedule import OpRecord, Schedule
from hwsim.errors import SimulationError
from hwsim.workload.ops import op_label


@dataclass(frozen=True)
class Result:
    """What a simulation produced.

    Attributes
    ----------
    arch, workload, phase : str
        Names of the chip, workload and phase simulated.
    latency_s : float
        End-to-end simulated time, in s.
    energy_j : float
        Total energy including idle (static) power over the latency, in J.
    energy_breakdown_j : dict
        ``compute_j``, one ``<level>_j`` per memory level, ``idle_j``.
    bytes_by_level : dict
        ``<level>_bytes``: bytes read and written at each level.
    flops : float
        Useful FLOP executed.
    tokens : int
        Tokens processed (prefill, train) or generated (decode, request).
    ttft_s, tpot_s : float or None
        Time to first token and mean time per output token (requests only).
    warnings : tuple of str
        What the simulation simplified or assumed that changes the answer (a sparsity
        pattern the chip lacks run dense, ...): the workload's lowering warnings and
        those found while costing it. The CLI prints them; ``--strict`` refuses them.

    Raises
    ------
    SimulationError
        If a total is infinite, NaN or negative (the message names the field and value).
    """

    arch: str
    workload: str
    phase: str
    latency_s: float
    energy_j: float
    energy_breakdown_j: dict[str, float]
    bytes_by_level: dict[str, float]
    flops: float
    tokens: int
    peak_flops_per_s: float
    params: dict[str, Any] = field(default_factory=dict)
    ttft_s: float | None = None
    tpot_s: float | None = None
    schedule_fn: Callable[[], Schedule | None] | None = field(default=None, repr=False, compare=False)
    """Builds the op-level schedule on first use (a request's is large)."""
    level_names: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    time_by_bound_s: dict[str, float] | None = field(default=None, repr=False, compare=False)
    """Op time of one chip by what bounds each op, in s (else read off the schedule)."""

    @cached_property
    def schedule(self) -> Schedule | None:
        """The op-level schedule of one chip (see :meth:`to_frame`), or None."""
        return self.schedule_fn() if self.schedule_fn is not None else None

    def __post_init__(self) -> None:
        # A handful of comparisons (NaN fails them too), so results stay cheap to build.
        named: list[tuple[str, Any]] = [
            ("latency_s", self.latency_s), ("energy_j", self.energy_j), ("flops", self.flops),
            ("tokens", self.tokens), ("peak_flops_per_s", self.peak_flops_per_s),
            ("ttft_s", self.ttft_s), ("tpot_s", self.tpot_s),
            *(("energy_breakdown_j." + k, v) for k, v in self.energy_breakdown_j.items()),
            *(("bytes_by_level." + k, v) for k, v in self.bytes_by_level.items()),
        ]
        if not all(v is None or 0.0 <= v < math.inf for _, v in named):
            bad = ", ".join(f"{k}={v!r}" for k, v in named if v is not None and not 0.0 <= v < math.inf)
            raise SimulationError(f"{self.arch}: {self.workload} ({self.phase}): result is not finite and "
                                  f"non-negative: {bad}")

    @property
    def achieved_flops_per_s(self) -> float:
        """FLOP per second over the whole run."""
        return self.flops / self.latency_s if self.latency_s else 0.0

    @property
    def compute_utilization(self) -> float:
        """Achieved FLOP/s as a fraction of the dense peak for the workload's dtype."""
        return self.achieved_flops_per_s / self.peak_flops_per_s if self.peak_flops_per_s else 0.0

    @property
    def achieved_bytes_per_s(self) -> dict[str, float]:
        """Mean bandwidth used at each level, ``<level>_bytes_per_s``."""
        t = self.latency_s or 1.0
        return {f"{k.removesuffix('_bytes')}_bytes_per_s": v / t for k, v in self.bytes_by_level.items()}

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second (decode/request: generated; prefill/train: processed)."""
        return self.tokens / self.latency_s if self.latency_s and self.tokens else 0.0

    @property
    def energy_per_token_j(self) -> float:
        return self.energy_j / self.tokens if self.tokens else 0.0

    @property
    def bound(self) -> str:
        """What limits the run: the bound that accounts for most of the op time."""
        time_by_bound = self.time_by_bound_s
        if time_by_bound is None:
            if self.schedule is None or not self.schedule.records:
                return "compute"
            time_by_bound = {}
            for rec in self.schedule.records:
                weight = self.schedule.multiplicity(rec) * (rec.end_s - rec.start_s)
                time_by_bound[rec.bound] = time_by_bound.get(rec.bound, 0.0) + weight
        if not time_by_bound:
            return "compute"
        return max(time_by_bound, key=lambda b: time_by_bound[b])

    def summary(self) -> dict[str, Any]:
        """Totals as a flat dict with units in every key."""
        out: dict[str, Any] = {
            "arch": self.arch, "workload": self.workload, "phase": self.phase,
            "latency_s": self.latency_s, "energy_j": self.energy_j,
            "flops": self.flops, "achieved_flops_per_s": self.achieved_flops_per_s,
            "compute_utilization": self.compute_utilization, "tokens": self.tokens,
            "tokens_per_s": self.tokens_per_s, "energy_per_token_j": self.energy_per_token_j,
            "bound": self.bound,
        }
        if self.ttft_s is not None:
            out |= {"ttft_s": self.ttft_s, "tpot_s": self.tpot_s}
        out |= {f"energy_{k}": v for k, v in self.energy_breakdown_j.items()}
        out |= self.bytes_by_level
        out |= self.achieved_bytes_per_s
        out["params"] = self.params
        out["warnings"] = list(self.warnings)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per operator instance: ``pass``, ``segment``, ``layer``, ``op``,
        ``kind``, ``start_s``, ``end_s``, ``latency_s``, ``flops``, ``compute_cycles``,
        ``<level>_bytes``, ``bound``, ``energy_j``, ``detail``."""
        return self._frame.copy()

    @cached_property
    def _frame(self) -> pd.DataFrame:
        if self.schedule is None:
            return pd.DataFrame()
        return expand_frame(self.schedule, self.level_names)

    def to_json(self, include_ops: bool = False, indent: int | None = 2) -> str:
        """The summary (and, with ``include_ops``, every op row) as JSON."""
        data = self.summary()
        if include_ops:
            data["ops"] = json.loads(self.to_frame().to_json(orient="records"))
        return json.dumps(data, indent=indent, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _row(rec: OpRecord, levels: tuple[str, ...], shift: float, layer: int, seg_name: str,
         pass_name: str) -> dict[str, Any]:
    cost = rec.cost
    row: dict[str, Any] = {
        "pass": pass_name, "segment": seg_name, "layer": layer, "op": rec.name,
        "kind": op_label(rec.op), "start_s": rec.start_s + shift, "end_s": rec.end_s + shift,
        "latency_s": rec.end_s - rec.start_s, "flops": cost.flops,
        "compute_cycles": cost.compute_cycles,
    }
    for t in cost.traffic:
        row[f"{t.level}_bytes"] = t.bytes
    for name in levels:
        row.setdefault(f"{name}_bytes", 0.0)
    row["prefetched_bytes"] = rec.prefetched_bytes
    row["bound"] = rec.bound
    row["energy_j"] = cost.compute_energy_j + sum(cost.level_energy_j)
    row["detail"] = cost.detail
    numbers = [(k, v) for k, v in row.items() if isinstance(v, float | int)]
    if not all(0.0 <= v < math.inf for _, v in numbers) or row["end_s"] < row["start_s"]:
        bad = ", ".join(f"{k}={v!r}" for k, v in numbers)
        raise SimulationError(f"op {rec.name} ({row['kind']}, {pass_name}/{seg_name}): frame values are not "
                              f"finite and non-negative: {bad}")
    return row


def expand_frame(schedule: Schedule, levels: tuple[str, ...]) -> pd.DataFrame:
    """Rows for every op instance, re-creating folded layers from the periodic one."""
    names = schedule.pass_names
    rows = []
    runs = {(r.pass_index, r.segment_index): r for r in schedule.segments}
    for rec in schedule.records:
        run = runs[(rec.pass_index, rec.segment_index)]
        seg = schedule.segment_names[rec.pass_index][rec.segment_index]
        pname = names[rec.pass_index]
        folded = run.repeat - run.simulated
        if rec.instance == 1 and folded > 0:
            for k in range(1, folded + 2):  # instances 1 .. repeat-2 are periodic copies
                rows.append(_row(rec, levels, (k - 1) * run.period_s, k, seg, pname))
        elif rec.instance == run.simulated - 1 and folded > 0:
            rows.append(_row(rec, levels, 0.0, run.repeat - 1, seg, pname))
        else:
            rows.append(_row(rec, levels, 0.0, rec.instance, seg, pname))
    frame = pd.DataFrame(rows)
    return frame.sort_values("start_s", kind="stable").reset_index(drop=True)
