"""The schedule is a valid serial execution of the operator DAG, and deterministic."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import hwsim
from hwsim.workload.ops import op_label

# (arch, model, lowering options): dense and MoE decoders, an encoder, every phase.
CASES = [
    pytest.param("h100-sxm", "llama2-7b", dict(phase="decode", batch=8, context_len=1024, n_layers=5),
                 id="h100-llama-decode"),
    pytest.param("h100-sxm", "llama2-7b", dict(phase="prefill", batch=1, prompt_len=512, n_layers=5),
                 id="h100-llama-prefill"),
    pytest.param("h100-sxm", "llama2-7b", dict(phase="train", batch=1, seq_len=256, n_layers=4),
                 id="h100-llama-train"),
    pytest.param("h100-sxm", "llama2-7b",
                 dict(phase="request", batch=2, prompt_len=128, new_tokens=4, n_layers=4),
                 id="h100-llama-request"),
    pytest.param("h100-sxm", "mixtral-8x7b", dict(phase="prefill", batch=1, prompt_len=256, n_layers=4),
                 id="h100-mixtral-prefill"),
    pytest.param("tpu-v4", "bert-large", dict(phase="train", batch=4, seq_len=128, n_layers=4),
                 id="tpu-v4-bert-train"),
    pytest.param("tpu-v4", "llama2-7b", dict(phase="decode", batch=16, context_len=2048, n_layers=5),
                 id="tpu-v4-llama-decode"),
    pytest.param("systolic-128", "llama2-7b",
                 dict(phase="request", batch=1, prompt_len=64, new_tokens=3, n_layers=4),
                 id="systolic-llama-request"),
]

#: Float slack for times assembled from folded periods (s).
EPS_S = 1e-15


def _run(arch: str, model: str, kw: dict[str, object]) -> tuple[hwsim.Workload, hwsim.Result]:
    workload = hwsim.load_workload(model, **kw)
    return workload, hwsim.simulate(workload, arch)


def graph_names(workload: hwsim.Workload, frame: pd.DataFrame) -> list[str]:
    """The ``Workload.to_graph()`` node name of each frame row.

    The expanded graph names an op ``{pass}/{segment}{layer}/{op}``, without the layer
    number when the segment is not repeated.
    """
    repeat = {(p.name, s.name): s.repeat for p in workload.passes for s in p.segments}
    names = []
    for p, s, layer, op in zip(frame["pass"], frame["segment"], frame["layer"], frame["op"], strict=True):
        suffix = f"{layer}" if repeat[(p, s)] > 1 else ""
        names.append(f"{p}/{s}{suffix}/{op}")
    return names


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_frame_rows_are_the_expanded_graph(arch: str, model: str, kw: dict[str, object]) -> None:
    """The frame has exactly one row per node of workload.to_graph(), with the same op kinds."""
    workload, result = _run(arch, model, kw)
    frame = result.to_frame()
    graph = workload.to_graph()
    names = graph_names(workload, frame)
    assert len(names) == len(set(names)) == graph.number_of_nodes() == workload.n_ops
    assert set(names) == set(graph.nodes)
    for name, kind in zip(names, frame["kind"], strict=True):
        assert kind == op_label(graph.nodes[name]["op"]), name


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_ops_start_after_their_predecessors_end(arch: str, model: str, kw: dict[str, object]) -> None:
    """Every op starts no earlier than the end of each of its predecessors in the DAG."""
    workload, result = _run(arch, model, kw)
    frame = result.to_frame()
    names = graph_names(workload, frame)
    start = dict(zip(names, frame["start_s"], strict=True))
    end = dict(zip(names, frame["end_s"], strict=True))
    graph = workload.to_graph()
    late = [(p, n, end[p] - start[n])
            for n in graph for p in graph.predecessors(n) if start[n] < end[p] - EPS_S]
    assert not late, f"ops starting before a predecessor ends (pred, op, overlap_s): {late[:5]}"


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_ops_do_not_overlap_on_compute_units(arch: str, model: str, kw: dict[str, object]) -> None:
    """Kernels run one at a time: in start order each op starts after the previous one ends."""
    _, result = _run(arch, model, kw)
    frame = result.to_frame()
    assert frame["start_s"].is_monotonic_increasing
    assert (frame["end_s"] >= frame["start_s"]).all()
    overlap = (frame["end_s"].shift(1) - frame["start_s"]).iloc[1:]
    assert overlap.max() <= EPS_S, f"ops overlap by up to {overlap.max():.3g} s"


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_latency_is_last_op_end(arch: str, model: str, kw: dict[str, object]) -> None:
    """The run's latency is the end time of its last op, and the first op starts at 0 (an
    eager pass: once the host has issued it)."""
    _, result = _run(arch, model, kw)
    chip = hwsim.load_arch(arch)
    frame = result.to_frame()
    first = min(result.schedule.records, key=lambda r: r.start_s)
    eager = result.phase == "train"
    expected = chip.host_dispatch_s * first.cost.n_kernels if eager else 0.0
    assert frame["start_s"].min() == pytest.approx(expected, abs=1e-15)
    assert frame["end_s"].max() == pytest.approx(result.latency_s, rel=1e-12)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_serial_op_times_fit_in_latency(arch: str, model: str, kw: dict[str, object]) -> None:
    """Ops are serialized, so their latencies (end - start) sum to at most the run's latency."""
    _, result = _run(arch, model, kw)
    frame = result.to_frame()
    assert (frame["latency_s"] > 0).all()
    assert frame["latency_s"].to_numpy() == pytest.approx((frame["end_s"] - frame["start_s"]).to_numpy(),
                                                          rel=1e-9, abs=EPS_S)
    assert frame["latency_s"].sum() <= result.latency_s * (1 + 1e-9)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_frame_totals_match_result(arch: str, model: str, kw: dict[str, object]) -> None:
    """Frame FLOPs and per-level bytes sum to the result's totals; FLOPs equal the workload's."""
    workload, result = _run(arch, model, kw)
    frame = result.to_frame()
    assert frame["flops"].sum() == pytest.approx(result.flops, rel=1e-9)
    assert result.flops == pytest.approx(workload.flops, rel=1e-9)
    for key, total in result.bytes_by_level.items():
        assert frame[key].sum() == pytest.approx(total, rel=1e-9), key


def test_request_ttft_is_end_of_prefill_pass() -> None:
    """A request's ttft_s is when its prefill pass's last op ends; decode steps start after it."""
    _, result = _run("h100-sxm", "llama2-7b",
                     dict(phase="request", batch=2, prompt_len=128, new_tokens=4, n_layers=4))
    frame = result.to_frame()
    prefill = frame[frame["pass"] == "prefill"]
    decode = frame[frame["pass"] != "prefill"]
    assert result.ttft_s == pytest.approx(prefill["end_s"].max(), rel=1e-12)
    assert decode["start_s"].min() >= prefill["end_s"].max() - EPS_S
    assert sorted(set(decode["pass"])) == [f"decode{i}" for i in range(4)]


@pytest.mark.parametrize(("arch", "model", "kw"), CASES[:3] + CASES[4:6])
def test_same_input_gives_identical_output(arch: str, model: str, kw: dict[str, object]) -> None:
    """Two runs of the same workload give bit-identical frames and JSON."""
    _, first = _run(arch, model, kw)
    _, second = _run(arch, model, kw)
    pd.testing.assert_frame_equal(first.to_frame(), second.to_frame(), check_exact=True)
    assert first.to_json() == second.to_json()
    assert first.to_json(include_ops=True) == second.to_json(include_ops=True)
    assert json.loads(first.to_json())["latency_s"] == first.latency_s
