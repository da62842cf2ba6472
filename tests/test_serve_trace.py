"""The Perfetto trace of a serving run: valid Trace Event JSON, a track per replica, a
slice per iteration carrying its batch, counters, and a slice per request."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import hwsim
from hwsim.cli import main
from hwsim.engine.serve.options import PoolOptions
from hwsim.serve_trace import iteration_lanes, serve_trace_events, server_names, write_serve_trace


def _serve(arch: str = "dgx-h100", n: int = 24, rate: float = 200.0, **options: object) -> hwsim.ServeResult:
    return hwsim.serve(hwsim.Requests.poisson(n, rate, 64, 8, seed=2), arch, n_layers=2, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two_replicas() -> hwsim.ServeResult:
    return _serve(plan=hwsim.Plan(dp=2), max_num_seqs=4)


def _check_format(doc: dict) -> None:
    """The rules of the Trace Event Format this trace uses."""
    assert set(doc) == {"traceEvents", "displayTimeUnit"}
    assert json.loads(json.dumps(doc)) == doc
    for ev in doc["traceEvents"]:
        assert {"ph", "pid", "name"} <= set(ev) and ev["ph"] in "XMCbe"
        if ev["ph"] != "M":
            assert isinstance(ev["ts"], float) and ev["ts"] >= 0
        if ev["ph"] == "X":
            assert ev["dur"] >= 0
    named = {(e["pid"], e["tid"]) for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in doc["traceEvents"] if e["ph"] == "X"} <= named


def _slices(doc: dict) -> list[dict]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X"]


def test_one_track_per_replica_and_a_slice_per_iteration(two_replicas: hwsim.ServeResult) -> None:
    """Two replicas: two named threads; each thread's slices are its server's iterations,
    with the batch composition in args and times in µs."""
    doc = serve_trace_events(two_replicas)
    _check_format(doc)
    threads = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"]
               if e["name"] == "thread_name" and e["pid"] == 1}
    assert sorted(threads.values()) == ["replica 0", "replica 1"]
    it = two_replicas.iterations
    slices = _slices(doc)
    assert len(slices) == len(it)
    for tid, name in threads.items():
        mine = sorted((e for e in slices if e["tid"] == tid), key=lambda e: e["ts"])
        rows = it[it.server == int(name.split()[-1])].sort_values("start_s")
        assert len(mine) == len(rows)
        np.testing.assert_allclose([e["ts"] for e in mine], rows.start_s * 1e6, rtol=1e-12)
        np.testing.assert_allclose([e["ts"] + e["dur"] for e in mine], rows.end_s * 1e6, rtol=1e-9)
        assert [e["args"]["batch_size"] for e in mine] == rows.batch_size.tolist()
        assert [e["args"]["kv_blocks_used"] for e in mine] == rows.kv_blocks_used.tolist()
        assert [e["args"]["n_prefill_tokens"] + e["args"]["n_decode_tokens"] for e in mine] == \
            (rows.n_prefill_tokens + rows.n_decode_tokens).tolist()
    kinds = Counter(e["name"] for e in slices)
    assert set(kinds) <= {"prefill", "decode", "mixed"} and kinds["prefill"] > 0


def test_counters_and_request_slices(two_replicas: hwsim.ServeResult) -> None:
    """A KV and a queue counter sample per iteration; per completed request one async slice
    from arrival to its last token with queued, prefill and decode inside it."""
    events = serve_trace_events(two_replicas)["traceEvents"]
    counters = Counter(e["name"] for e in events if e["ph"] == "C")
    n = two_replicas.iterations.server.value_counts()
    assert counters == {f"replica {s}: {c}": int(k) for s, k in n.items()
                        for c in ("kv_blocks_used", "queue_len")}
    begins = [e for e in events if e["ph"] == "b"]
    ends = [e for e in events if e["ph"] == "e"]
    assert len(begins) == len(ends) == 4 * len(two_replicas.requests)
    req = two_replicas.requests.set_index("request")
    for e in begins:
        if e["name"].startswith("request "):
            row = req.loc[e["id"]]
            assert e["ts"] == pytest.approx(row.arrival_s * 1e6, abs=1e-6)
            assert e["args"]["output_len"] == row.output_len
    last = {e["id"]: e["ts"] for e in ends if e["name"].startswith("request ")}
    np.testing.assert_allclose([last[i] for i in req.index], (req.arrival_s + req.e2e_s) * 1e6, rtol=1e-9)


def test_disaggregated_pools_name_their_servers() -> None:
    """Prefill and decode servers get their pool's name."""
    result = _serve(n=12, pools=(PoolOptions(role="prefill", replicas=2), PoolOptions(role="decode")))
    assert server_names(result.config) == {0: "prefill 0", 1: "prefill 1", 2: "decode 0"}
    doc = serve_trace_events(result, include_requests=False)
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert names == {"prefill 0", "prefill 1", "decode 0"}
    assert not any(e["ph"] in "be" for e in doc["traceEvents"])


def test_overlapping_pipeline_batches_get_their_own_lane() -> None:
    """With pp > 1 batches overlap in time; slices of one thread never overlap."""
    result = _serve(n=30, rate=400.0, plan=hwsim.Plan(pp=2))
    lanes = iteration_lanes(result.iterations)
    assert lanes.max() >= 1
    doc = serve_trace_events(result, include_requests=False)
    _check_format(doc)
    by_tid: dict[int, list[tuple[float, float]]] = {}
    for e in _slices(doc):
        by_tid.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_tid.values():
        spans.sort()
        assert all(end <= nxt + 1e-6 for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False))
    assert len(_slices(doc)) == len(result.iterations)


def test_write_and_the_cli(tmp_path: Path, two_replicas: hwsim.ServeResult) -> None:
    """write_serve_trace writes loadable JSON and refuses another suffix; --trace-out writes one."""
    _check_format(json.loads(write_serve_trace(two_replicas, tmp_path / "t.json").read_text()))
    with pytest.raises(hwsim.ConfigError, match=r"\.json"):
        write_serve_trace(two_replicas, tmp_path / "t.txt")
    out = tmp_path / "cli.json"
    res = CliRunner().invoke(main, ["serve", "--n-layers", "2", "--requests", "5", "--prompt-len", "32",
                                    "--output-len", "4", "--trace-out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    assert len(_slices(json.loads(out.read_text()))) > 0
