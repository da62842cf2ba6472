"""Timeline lanes and the Perfetto trace: one bar per op on its resource, a valid trace file."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hwsim
from hwsim.plot import TimelineDisplay
from hwsim.trace import lane_order, op_frame, timeline_bars, trace_events, write_trace
from hwsim.workload.ops import COLLECTIVE_KINDS


def test_compute_and_link_bars_equal_the_op_records(tp8_result, ax):
    """Every op instance (folded layers expanded) is one bar on compute or on its link lane."""
    d = TimelineDisplay.from_result(tp8_result, ax=ax)
    frame = tp8_result.to_frame()
    n_coll = int(frame.kind.isin(COLLECTIVE_KINDS).sum())
    assert n_coll > 0
    assert d.lanes_[0] == "compute" and "link:tp" in d.lanes_
    assert len(d.collections_["compute"].get_paths()) == len(frame) - n_coll
    assert len(d.collections_["link:tp"].get_paths()) == n_coll
    # The schedule's records are the simulated instances; the frame re-creates the folded ones.
    sched = tp8_result.schedule
    assert len(frame) == sum(sched.multiplicity(r) for r in sched.records)


def test_memory_bars_last_bytes_over_bandwidth_within_the_op(tp8_result):
    """A memory bar starts with its op, lasts bytes / sustained bandwidth, and never outlasts the op."""
    chip = hwsim.load_arch("h100-sxm")
    frame = op_frame(tp8_result)
    bars = timeline_bars(frame, chip)
    hbm = bars[bars.lane == "memory:hbm"].reset_index(drop=True)
    ops = frame[frame.hbm_bytes > 0].sort_values("start_s", kind="stable").reset_index(drop=True)
    assert len(hbm) == len(ops)
    level = chip.memory["hbm"]
    expect = np.minimum(ops.hbm_bytes / (level.bandwidth_bytes_per_s * level.achievable_fraction),
                        ops.end_s - ops.start_s)
    np.testing.assert_allclose(hbm.end_s - hbm.start_s, expect, rtol=1e-9, atol=1e-15)
    assert (bars.end_s >= bars.start_s).all()


def test_time_axis_has_a_unit(h100_result, ax):
    """The x label names the time unit and the axis spans the whole latency."""
    d = TimelineDisplay.from_result(h100_result, ax=ax)
    assert ax.get_xlabel() == f"time ({d.time_unit_})"
    factor = {"s": 1.0, "ms": 1e3, "µs": 1e6}[d.time_unit_]
    assert ax.get_xlim()[1] == pytest.approx(h100_result.to_frame().end_s.max() * factor)


def test_lane_order():
    """compute, then memory levels innermost first, then links."""
    chip = hwsim.load_arch("h100-sxm")
    lanes = ["link:tp", "memory:hbm", "compute", "memory:smem", "memory:l2", "link:dp"]
    assert lane_order(lanes, chip) == ["compute", "memory:smem", "memory:l2", "memory:hbm", "link:dp",
                                       "link:tp"]


def _check_trace(doc: dict) -> None:
    """The Trace Event Format rules hwsim's traces follow."""
    assert set(doc) == {"traceEvents", "displayTimeUnit"} and doc["displayTimeUnit"] == "ns"
    named: set[tuple[int, int]] = set()
    complete = []
    for ev in doc["traceEvents"]:
        assert {"ph", "pid", "tid", "name"} <= set(ev)
        assert ev["ph"] in ("X", "M")
        if ev["ph"] == "M":
            assert ev["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index")
            assert isinstance(ev["args"], dict)
            if ev["name"] == "thread_name":
                named.add((ev["pid"], ev["tid"]))
        else:
            assert isinstance(ev["ts"], float) and ev["ts"] >= 0
            assert isinstance(ev["dur"], float) and ev["dur"] >= 0
            complete.append(ev)
    assert complete
    assert {(ev["pid"], ev["tid"]) for ev in complete} <= named


def test_trace_follows_the_format(tp8_result, h100_result):
    """Two results: two processes, lanes named, events in µs matching the frame."""
    doc = trace_events([tp8_result, h100_result])
    _check_trace(doc)
    events = doc["traceEvents"]
    procs = {ev["pid"]: ev["args"]["name"] for ev in events if ev["name"] == "process_name"}
    assert procs == {1: "dgx-h100: llama2-7b decode", 2: "h100-sxm: llama2-7b decode"}
    compute_tid = next(ev["tid"] for ev in events if ev["name"] == "thread_name" and ev["pid"] == 2
                       and ev["args"]["name"] == "compute")
    ops = [ev for ev in events if ev["ph"] == "X" and ev["pid"] == 2 and ev["tid"] == compute_tid]
    frame = h100_result.to_frame()
    assert len(ops) == len(frame)
    assert max(ev["ts"] + ev["dur"] for ev in ops) == pytest.approx(frame.end_s.max() * 1e6)
    assert json.loads(json.dumps(doc)) == doc


def test_write_trace(tmp_path, tp8_result):
    """write_trace writes loadable JSON and refuses another suffix or an unwritable path."""
    path = write_trace(tp8_result, tmp_path / "t.json")
    _check_trace(json.loads(path.read_text()))
    with pytest.raises(hwsim.ConfigError, match=r"\.json"):
        write_trace(tp8_result, tmp_path / "t.txt")
    with pytest.raises(hwsim.ConfigError, match="cannot write"):
        write_trace(tp8_result, tmp_path / "missing" / "t.json")
