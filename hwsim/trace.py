"""Timeline lanes of a schedule and their export to the Chrome/Perfetto trace format.

Lane convention (shared by :class:`hwsim.plot.TimelineDisplay` and the trace file):

- ``compute``: every op that is not a collective, from its start to its end (the engine
  runs one kernel at a time on the compute units);
- ``memory:<level>``: for every op with traffic at ``<level>``, a bar from the op's start
  lasting ``<level>_bytes / (bandwidth * achievable_fraction)`` (the bandwidth of all
  copies of a per-unit level) — the time the level's port is busy moving the op's
  bytes — cut at the op's end (bytes that
  were prefetched or overlap with compute do not stretch the op);
- ``link:<group>``: collectives (:class:`hwsim.workload.ops.Collective`) of one
  parallel group (``tp``, ``dp``, ``pp``...), from start to end; a frame without a
  ``group`` column puts them on ``link``.

For a multi-chip plan the schedule is that of one chip (every chip runs the same one).
This module does not import matplotlib, so ``hwsim trace`` works without a display.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.arch.model import Chip
from hwsim.arch.system import System, load_system
from hwsim.cost.model import level_bandwidth_bytes_per_s
from hwsim.errors import ConfigError, HwsimError
from hwsim.result import Result
from hwsim.workload.ops import COLLECTIVE_KINDS, Collective

#: Columns of :func:`timeline_bars`.
BAR_COLUMNS = ("lane", "op", "kind", "pass", "segment", "layer", "start_s", "end_s", "bytes")

_S_TO_US = 1e6


def resolve_chip(result: Result, chip: Chip | System | str | Path | None = None) -> Chip:
    """The chip ``result`` ran on: ``chip`` if given, else the preset named ``result.arch``.

    A result of a modified chip (``hwsim.arch.with_overrides``) keeps its preset's name;
    pass that chip as ``chip``. A preset whose peak FLOP/s or memory levels disagree
    with the result is refused rather than drawn wrongly.

    Raises
    ------
    ConfigError
        If the preset cannot be loaded or does not match the result.
    """
    try:
        found = load_system(chip if chip is not None else result.arch).chip
    except HwsimError as exc:
        lines = getattr(exc, "problems", [str(exc)])
        hint = f"{result.arch}: pass chip= for a result of a custom architecture"
        raise ConfigError([*lines, hint]) from None
    dtype = str(result.params.get("dtype", "bf16"))
    n_chips = int(result.params.get("n_chips", 1))
    peak = found.peak_flops_per_s(dtype) * n_chips
    same_peak = abs(peak - result.peak_flops_per_s) <= 1e-9 * max(peak, 1.0)
    if (result.level_names and tuple(result.level_names) != found.level_names) or not same_peak:
        raise ConfigError([f"{result.arch}: chip {found.name!r} does not match the result "
                           "(peak FLOP/s or memory levels differ); pass the chip it ran on as chip="])
    return found


def op_frame(result: Result) -> pd.DataFrame:
    """``result.to_frame()`` plus a ``group`` column: the parallel group of each
    collective (``tp``, ``dp``...), ``""`` for other ops."""
    frame = result.to_frame()
    groups: dict[tuple[str, str, str], str] = {}
    schedule = result.schedule
    if schedule is not None:
        for rec in schedule.records:
            if isinstance(rec.op, Collective):
                key = (schedule.pass_names[rec.pass_index],
                       schedule.segment_names[rec.pass_index][rec.segment_index], rec.name)
                groups[key] = rec.op.group
    if frame.empty:
        return frame.assign(group=pd.Series(dtype=str))
    keys = zip(frame["pass"], frame["segment"], frame["op"], strict=True)
    return frame.assign(group=[groups.get(k, "") for k in keys])


def _is_collective(frame: pd.DataFrame) -> pd.Series:
    return frame["kind"].isin(COLLECTIVE_KINDS)


def timeline_bars(frame: pd.DataFrame, chip: Chip) -> pd.DataFrame:
    """One row per bar of the timeline (lane convention in the module docstring).

    Parameters
    ----------
    frame : DataFrame
        Op rows as :meth:`Result.to_frame` or :func:`op_frame` gives them (``op``,
        ``kind``, ``start_s``, ``end_s``, ``<level>_bytes``; optionally ``group``).
    chip : Chip
        Gives the levels and their bandwidths.

    Returns
    -------
    DataFrame
        Columns :data:`BAR_COLUMNS`, lanes in :func:`lane_order`; ``bytes`` is 0 on
        compute and link lanes.
    """
    if frame.empty:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    base = frame.assign(bytes=0.0)
    for col in ("pass", "segment", "layer"):
        if col not in base:
            base[col] = ""
    coll = _is_collective(base)
    group = base["group"] if "group" in base else pd.Series("", index=base.index)
    link_lane = ("link:" + group.astype(str)).where(group.astype(str) != "", "link")
    parts = [base.assign(lane=link_lane.where(coll, "compute"))]
    for level in chip.level_names:
        col = f"{level}_bytes"
        if col not in base:
            continue
        moved = base[base[col] > 0]
        mem = chip.memory[level]
        busy_s = moved[col] / (level_bandwidth_bytes_per_s(chip, level) * mem.achievable_fraction)
        end_s = pd.concat([moved["start_s"] + busy_s, moved["end_s"]], axis=1).min(axis=1)
        parts.append(moved.assign(lane=f"memory:{level}", end_s=end_s, bytes=moved[col]))
    bars = pd.concat(parts, ignore_index=True)[list(BAR_COLUMNS)]
    order = {lane: i for i, lane in enumerate(lane_order(bars["lane"].unique(), chip))}
    bars = bars.assign(_rank=bars["lane"].map(order))
    return bars.sort_values(["_rank", "start_s"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def lane_order(lanes: Sequence[str] | Any, chip: Chip | None = None) -> list[str]:
    """Lanes top to bottom: ``compute``, ``memory:<level>`` innermost first, then links."""
    levels = list(chip.level_names) if chip is not None else []

    def rank(lane: str) -> tuple[int, int, str]:
        if lane == "compute":
            return (0, 0, lane)
        if lane.startswith("memory:"):
            name = lane.removeprefix("memory:")
            return (1, levels.index(name) if name in levels else len(levels), lane)
        return (2, 0, lane)

    return sorted(set(lanes), key=rank)


def trace_events(results: Result | Sequence[Result],
                 chips: Sequence[Chip | System | str | None] | None = None) -> dict[str, Any]:
    """The Trace Event Format document of one or more results.

    Each result is a process (``pid`` 1, 2, ... named ``<arch>: <workload> <phase>``),
    each lane a thread (``tid`` in :func:`lane_order`, named by ``thread_name``
    metadata); each bar a complete event (``"ph": "X"``) with ``ts`` and ``dur`` in µs.

    Parameters
    ----------
    results : Result or sequence of Result
    chips : sequence, optional
        The chip each result ran on (see :func:`resolve_chip`); default: by name.
    """
    items = [results] if isinstance(results, Result) else list(results)
    given = list(chips) if chips is not None else [None] * len(items)
    if len(given) != len(items):
        raise ConfigError([f"chips: {len(given)} given for {len(items)} results"])
    events: list[dict[str, Any]] = []
    for pid, (result, chip) in enumerate(zip(items, given, strict=True), start=1):
        events += _process_events(pid, result, resolve_chip(result, chip))
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def _process_events(pid: int, result: Result, chip: Chip) -> list[dict[str, Any]]:
    bars = timeline_bars(op_frame(result), chip)
    lanes = lane_order(bars["lane"].unique(), chip)
    name = f"{result.arch}: {result.workload} {result.phase}"
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": name}},
        {"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index", "args": {"sort_index": pid}},
    ]
    tids = {lane: i for i, lane in enumerate(lanes, start=1)}
    for lane, tid in tids.items():
        events.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": lane}})
        events.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                       "args": {"sort_index": tid}})
    row: Any
    for row in bars.rename(columns={"pass": "pass_name"}).itertuples(index=False):
        start_us = float(row.start_s) * _S_TO_US
        args = {"kind": row.kind, "pass": str(row.pass_name), "segment": str(row.segment),
                "layer": _plain(row.layer)}
        if row.bytes:
            args["bytes"] = float(row.bytes)
        events.append({"ph": "X", "pid": pid, "tid": tids[row.lane], "name": str(row.op),
                       "cat": row.lane.split(":")[0], "ts": max(0.0, start_us),
                       "dur": max(0.0, float(row.end_s) * _S_TO_US - start_us), "args": args})
    return events


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def check_trace_path(path: str | Path) -> Path:
    """``path`` as a Path if it ends in ``.json`` (the CLI checks before simulating).

    Raises
    ------
    ConfigError
        For another suffix.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise ConfigError([f"{path}: a trace is written as JSON; use a .json file name"])
    return path


def write_trace(results: Result | Sequence[Result], path: str | Path,
                chips: Sequence[Chip | System | str | None] | None = None) -> Path:
    """Write :func:`trace_events` as JSON to ``path`` (open it in https://ui.perfetto.dev
    or ``chrome://tracing``); returns the path.

    Raises
    ------
    ConfigError
        If the path does not end in ``.json`` or cannot be written.
    """
    path = check_trace_path(path)
    doc = trace_events(results, chips)
    try:
        path.write_text(json.dumps(doc))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot write the trace ({exc.strerror or exc})"]) from None
    return path
