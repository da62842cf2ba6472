"""A serving run as a Chrome/Perfetto trace: replicas, their iterations and the requests.

Layout (the Trace Event Format that :mod:`hwsim.trace` writes, times in µs):

- process 1 is the run (``<arch>: <model> <scheduler>``); each replica (server) is a
  thread named as :func:`server_names` names it (``replica 0``, or ``prefill 0`` /
  ``decode 0`` in a disaggregated run), and each iteration a complete slice (``"ph":
  "X"``) named ``prefill``, ``decode`` or ``mixed`` after its tokens, whose ``args`` hold
  the batch composition: ``n_prefill_tokens``, ``n_decode_tokens``, ``batch_size``,
  ``queue_len``, ``kv_blocks_used``, ``kv_blocks_total``, ``energy_j``. A pipelined
  replica (``pp > 1``) can have several batches in flight; overlapping iterations go on
  extra threads of that replica (``replica 0 (in flight 2)``...), because slices of one
  thread must nest.
- counter tracks per replica: ``<replica>: kv_blocks_used`` (the blocks held when an
  iteration ends, at its end) and ``<replica>: queue_len`` (requests waiting when it
  starts, at its start);
- process 2 (optional) holds one async slice per completed request, from arrival to its
  last token, with children ``queued`` (arrival to first scheduled), ``prefill`` (to the
  first token) and ``decode`` (to the last token), and its lengths and latencies in
  ``args``.

This module imports neither matplotlib nor the engine's internals: it reads the frames of
a :class:`~hwsim.engine.serve.result.ServeResult`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim.engine.serve.result import ITERATION_FRAME_COLUMNS, ServeResult
from hwsim.errors import ConfigError
from hwsim.trace import check_trace_path

_S_TO_US = 1e6
_ROLE_NAMES = {"both": "replica", "prefill": "prefill", "decode": "decode"}
_COUNT_ARGS = ("n_prefill_tokens", "n_decode_tokens", "batch_size", "queue_len", "kv_blocks_used",
               "kv_blocks_total")


def server_names(config: Mapping[str, Any] | None) -> dict[int, str]:
    """A name per server index from a run's ``config`` (``ServeResult.config``): the
    pools in order, each numbering its replicas (``replica 0``, ``prefill 0``,
    ``decode 0``...). Empty without pools; callers fall back to ``replica <index>``."""
    names: dict[int, str] = {}
    for pool in (config or {}).get("pools", []):
        role = _ROLE_NAMES.get(str(pool.get("role", "both")), str(pool.get("role")))
        for i in range(int(pool.get("replicas", 1))):
            names[len(names)] = f"{role} {i}"
    return names


def server_name(names: Mapping[int, str], server: int) -> str:
    return names.get(server, f"replica {server}")


def iteration_lanes(iterations: pd.DataFrame) -> np.ndarray:
    """The lane of each iteration within its server: 0, unless it overlaps an earlier one
    of the same server (a pipelined replica), then the first lane free at its start."""
    lanes = np.zeros(len(iterations), dtype=np.int64)
    frame = iterations.reset_index(drop=True)
    for _, rows in frame.groupby("server", sort=True):
        ordered = rows.sort_values(["start_s", "end_s"], kind="stable")
        free_at: list[float] = []  # end of the last slice on each lane
        for idx, start, end in zip(ordered.index, ordered["start_s"], ordered["end_s"], strict=True):
            lane = next((i for i, t in enumerate(free_at) if t <= start), len(free_at))
            if lane == len(free_at):
                free_at.append(end)
            else:
                free_at[lane] = end
            lanes[idx] = lane
    return lanes


def iteration_kind(n_prefill_tokens: int, n_decode_tokens: int) -> str:
    """``prefill``, ``decode`` or ``mixed``: the tokens an iteration fed."""
    if n_decode_tokens == 0:
        return "prefill"
    return "decode" if n_prefill_tokens == 0 else "mixed"


def _us(seconds: float) -> float:
    return max(0.0, float(seconds) * _S_TO_US)


def _meta(pid: int, tid: int, name: str, value: Any) -> dict[str, Any]:
    key = "name" if name.endswith("_name") else "sort_index"
    return {"ph": "M", "pid": pid, "tid": tid, "name": name, "args": {key: value}}


def _iteration_events(iterations: pd.DataFrame, names: Mapping[int, str]) -> list[dict[str, Any]]:
    frame = iterations.reset_index(drop=True).assign(track_lane=iteration_lanes(iterations))
    pairs = zip(frame["server"], frame["track_lane"], strict=True)
    tracks = sorted({(int(s), int(lane)) for s, lane in pairs})
    tids = {track: i for i, track in enumerate(tracks, start=1)}
    events: list[dict[str, Any]] = []
    for (server, lane), tid in tids.items():
        label = server_name(names, server) + (f" (in flight {lane + 1})" if lane else "")
        events += [_meta(1, tid, "thread_name", label), _meta(1, tid, "thread_sort_index", tid)]
    row: Any
    for row in frame.itertuples(index=False):
        counts = {k: int(getattr(row, k)) for k in _COUNT_ARGS}
        start_us = _us(row.start_s)
        track = server_name(names, int(row.server))
        events.append({"ph": "X", "pid": 1, "tid": tids[int(row.server), int(row.track_lane)],
                       "name": iteration_kind(counts["n_prefill_tokens"], counts["n_decode_tokens"]),
                       "cat": "iteration", "ts": start_us, "dur": max(0.0, _us(row.end_s) - start_us),
                       "args": {**counts, "energy_j": float(row.energy_j)}})
        events.append({"ph": "C", "pid": 1, "tid": 0, "name": f"{track}: kv_blocks_used",
                       "ts": _us(row.end_s), "args": {"kv_blocks_used": counts["kv_blocks_used"]}})
        events.append({"ph": "C", "pid": 1, "tid": 0, "name": f"{track}: queue_len",
                       "ts": start_us, "args": {"queue_len": counts["queue_len"]}})
    return events


def _request_events(requests: pd.DataFrame) -> list[dict[str, Any]]:
    events = [_meta(2, 0, "process_name", "requests"), _meta(2, 0, "process_sort_index", 2)]
    done = requests[requests["completed"]] if "completed" in requests else requests
    row: Any
    for row in done.itertuples(index=False):
        arrival = float(row.arrival_s)
        marks = [arrival, *(arrival + float(v) for v in (row.queue_s, row.ttft_s, row.e2e_s))]
        if not all(math.isfinite(t) for t in marks):
            continue
        rid = int(row.request)
        args = {"prompt_len": int(row.prompt_len), "output_len": int(row.output_len),
                "ttft_s": float(row.ttft_s), "e2e_s": float(row.e2e_s),
                "n_preemptions": int(getattr(row, "n_preemptions", 0))}
        if math.isfinite(float(row.tpot_s)):
            args["tpot_s"] = float(row.tpot_s)
        if hasattr(row, "replica"):
            args["replica"] = int(row.replica)
        common = {"pid": 2, "tid": 0, "cat": "request", "id": rid}
        events.append({**common, "ph": "b", "name": f"request {rid}", "ts": _us(marks[0]), "args": args})
        for name, t0, t1 in zip(("queued", "prefill", "decode"), marks[:-1], marks[1:], strict=True):
            events.append({**common, "ph": "b", "name": name, "ts": _us(t0)})
            events.append({**common, "ph": "e", "name": name, "ts": _us(t1)})
        events.append({**common, "ph": "e", "name": f"request {rid}", "ts": _us(marks[3])})
    return events


def frames_trace_events(iterations: pd.DataFrame, requests: pd.DataFrame | None = None, *,
                        names: Mapping[int, str] | None = None, title: str = "serving") -> dict[str, Any]:
    """The trace document of a serving run's frames (layout: module docstring).

    Parameters
    ----------
    iterations : DataFrame
        ``ServeResult.iterations`` (columns :data:`ITERATION_FRAME_COLUMNS`).
    requests : DataFrame, optional
        ``ServeResult.requests``; with it, one async slice per completed request.
    names : mapping, optional
        Server index -> thread name (:func:`server_names`).
    title : str
        The run's process name.

    Raises
    ------
    ConfigError
        If a frame lacks a column the trace needs.
    """
    missing = [c for c in ITERATION_FRAME_COLUMNS if c not in iterations]
    if requests is not None:
        missing += [f"requests.{c}" for c in ("request", "arrival_s", "prompt_len", "output_len", "queue_s",
                                               "ttft_s", "tpot_s", "e2e_s") if c not in requests]
    if missing:
        raise ConfigError([f"trace: frame: missing columns {', '.join(missing)}"])
    events = [_meta(1, 0, "process_name", title), _meta(1, 0, "process_sort_index", 1)]
    events += _iteration_events(iterations, names or {})
    if requests is not None:
        events += _request_events(requests)
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def serve_trace_events(result: ServeResult, *, include_requests: bool = True) -> dict[str, Any]:
    """The trace document of ``result`` (layout: module docstring)."""
    return frames_trace_events(result.iterations, result.requests if include_requests else None,
                               names=server_names(result.config),
                               title=f"{result.arch}: {result.model} {result.scheduler}")


def write_serve_trace(result: ServeResult, path: str | Path, *, include_requests: bool = True) -> Path:
    """Write :func:`serve_trace_events` as JSON to ``path`` (open it in
    https://ui.perfetto.dev); returns the path.

    Raises
    ------
    ConfigError
        If the path does not end in ``.json`` or cannot be written.
    """
    path = check_trace_path(path)
    doc = serve_trace_events(result, include_requests=include_requests)
    try:
        path.write_text(json.dumps(doc))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot write the trace ({exc.strerror or exc})"]) from None
    return path
