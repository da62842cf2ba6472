"""Weight prefetch: the next op's weights stream in while the home-memory port is idle."""

from __future__ import annotations

import pytest

import hwsim
import hwsim.engine
from hwsim.arch import Chip
from hwsim.cost import OpCost, cost_op
from hwsim.cost.model import transfer_time_s
from hwsim.cost.power import power_limited_s
from hwsim.workload.graph import OperatorGraph, Pass, Segment, Workload
from hwsim.workload.ops import Elementwise, MatMul, Op

#: Float slack for times assembled from folded periods (s).
EPS_S = 1e-15

CASES = [
    pytest.param("h100-sxm", "llama2-7b", dict(phase="prefill", batch=1, prompt_len=512, n_layers=5),
                 id="h100-llama-prefill"),
    pytest.param("h100-sxm", "mixtral-8x7b", dict(phase="prefill", batch=1, prompt_len=256, n_layers=4),
                 id="h100-mixtral-prefill"),
    pytest.param("h100-sxm", "llama2-7b", dict(phase="train", batch=1, seq_len=256, n_layers=4),
                 id="h100-llama-train"),
    pytest.param("tpu-v4", "llama2-7b",
                 dict(phase="request", batch=1, prompt_len=64, new_tokens=3, n_layers=4),
                 id="tpu-v4-llama-request"),
    pytest.param("tpu-v4", "bert-large", dict(phase="train", batch=1, seq_len=128, n_layers=4),
                 id="tpu-v4-bert-train"),
    pytest.param("systolic-128", "llama2-7b",
                 dict(phase="request", batch=1, prompt_len=64, new_tokens=3, n_layers=4),
                 id="systolic-llama-request"),
]


def home_bandwidth(chip: Chip) -> float:
    """Achievable bandwidth of the home (outermost) memory level, in bytes/s."""
    home = chip.memory[chip.home_level]
    return home.bandwidth_bytes_per_s * home.achievable_fraction


def chain(*ops: Op) -> Workload:
    """A one-pass workload running ``ops`` one after another."""
    graph = OperatorGraph()
    prev: list[str] = []
    for i, op in enumerate(ops):
        prev = [graph.add_op(f"op{i}", op, prev)]
    return Workload("chain", "prefill", (Pass("p", (Segment("s", graph),), tokens=1),), {}, {})


def _run(arch: str, model: str, kw: dict[str, object]) -> tuple[Chip, hwsim.Result]:
    chip = hwsim.load_arch(arch)
    return chip, hwsim.simulate(hwsim.load_workload(model, **kw), chip)


def test_prefill_prefetches_after_a_compute_bound_op() -> None:
    """A llama2-7b prefill on h100-sxm prefetches some weight GEMM while the op before it
    leaves the HBM port idle."""
    _, result = _run("h100-sxm", "llama2-7b", dict(phase="prefill", batch=1, prompt_len=2048, n_layers=5))
    frame = result.to_frame()
    rows = frame.index[frame["prefetched_bytes"] > 0]
    assert len(rows) > 0
    for i in rows:
        assert frame.at[i, "kind"] == "matmul"
        assert frame.at[i - 1, "bound"] != "hbm", frame.loc[i - 1 : i, ["op", "bound"]]


@pytest.mark.parametrize(
    ("a", "limit"),
    [
        pytest.param(MatMul(2048, 4096, 2048, b_is_weight=False), "room", id="l2-room-limited"),
        pytest.param(MatMul(4096, 1024, 1024, b_is_weight=False), "time", id="time-limited"),
    ],
)
def test_prefetch_closed_form(a: MatMul, limit: str) -> None:
    """After a compute-bound GEMM, the next weight GEMM gets min(weights, free L2 room, idle
    port time x bandwidth) prefetched, and its HBM time shrinks by exactly those bytes."""
    chip = hwsim.load_arch("h100-sxm")
    b = MatMul(16, 4096, 4096)  # decode-like weight GEMM: 32 MiB of weights, memory bound
    cost_a, cost_b = cost_op(a, chip), cost_op(b, chip)
    assert cost_a.bound == "compute"
    bw = home_bandwidth(chip)
    home_a = cost_a.level_s[-1]
    idle_port_s = max(cost_a.compute_s, *cost_a.level_s) - home_a
    room = chip.level_capacity_bytes(chip.level_names[-2]) - cost_a.traffic[-1].bytes
    limits = {"weights": b.b_bytes, "room": room, "time": idle_port_s * bw}
    assert min(limits, key=limits.__getitem__) == limit
    expected = min(limits.values())

    result = hwsim.simulate(chain(a, b), chip)
    rec_a, rec_b = result.schedule.records
    assert rec_a.prefetched_bytes == 0.0
    assert rec_b.prefetched_bytes == pytest.approx(expected, rel=1e-9)
    # Prefetched bytes came in at full bandwidth; the rest still pays the stream's ramp.
    home_s = transfer_time_s(chip.memory[chip.home_level], cost_b.traffic[-1].bytes) - expected / bw
    b_s = cost_b.overhead_s + max(cost_b.compute_s, *cost_b.level_s[:-1], home_s)
    assert rec_b.end_s - rec_b.start_s == pytest.approx(b_s, rel=1e-9)
    assert result.latency_s == pytest.approx(chip.launch_overhead_s + cost_a.latency_s + b_s, rel=1e-9)
    assert result.latency_s < chip.launch_overhead_s + cost_a.latency_s + cost_b.latency_s


def test_no_prefetch_after_a_memory_bound_op() -> None:
    """An op bound by home-memory traffic leaves no idle port time: nothing is prefetched."""
    chip = hwsim.load_arch("h100-sxm")
    a = MatMul(1, 4096, 4096)  # a GEMV: reads its weights at full HBM bandwidth
    assert cost_op(a, chip).bound == "hbm"
    result = hwsim.simulate(chain(a, MatMul(16, 4096, 4096)), chip)
    assert [r.prefetched_bytes for r in result.schedule.records] == [0.0, 0.0]


def test_no_prefetch_without_an_inner_buffer() -> None:
    """A chip with a single memory level has no buffer to prefetch into: ops run back to back."""
    chip = hwsim.load_arch("groq-lpu")
    assert len(chip.level_names) == 1
    ops = (MatMul(2048, 2048, 2048, b_is_weight=False), MatMul(16, 2048, 2048), MatMul(16, 2048, 2048))
    result = hwsim.simulate(chain(*ops), chip)
    assert all(r.prefetched_bytes == 0.0 for r in result.schedule.records)
    serial = chip.launch_overhead_s + sum(cost_op(op, chip).latency_s for op in ops)
    assert result.latency_s == pytest.approx(serial, rel=1e-12)


def _weight_bytes(op: Op) -> float:
    return op.b_bytes if isinstance(op, MatMul) and op.b_is_weight else 0.0


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_prefetched_bytes_never_exceed_weights(arch: str, model: str, kw: dict[str, object]) -> None:
    """An op never has more prefetched than its own weight bytes, nor more than the buffer holds."""
    chip, result = _run(arch, model, kw)
    buffer = chip.level_capacity_bytes(chip.level_names[-2]) if len(chip.level_names) > 1 else 0.0
    for rec in result.schedule.records:
        assert 0.0 <= rec.prefetched_bytes <= rec.cost.prefetchable_bytes * (1 + 1e-12), rec.name
        assert rec.prefetched_bytes <= _weight_bytes(rec.op) * (1 + 1e-12), rec.name
        assert rec.prefetched_bytes <= buffer, rec.name


def _standalone_s(chip: Chip, cost: OpCost, first_of_pass: bool) -> float:
    return cost.latency_s + (chip.launch_overhead_s if first_of_pass else 0.0)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_prefetch_never_slower_than_standalone_ops(arch: str, model: str, kw: dict[str, object]) -> None:
    """With prefetch no op takes longer than it does alone at the sustained power limit,
    and the run takes at most the sum of its ops' standalone latencies (plus one host
    launch per pass, or, run eagerly, the host's issue time)."""
    chip, result = _run(arch, model, kw)
    schedule = result.schedule
    assert schedule is not None
    seen: set[int] = set()
    serial = host = 0.0
    for rec in schedule.records:
        first = rec.pass_index not in seen
        seen.add(rec.pass_index)
        alone = power_limited_s(chip, rec.cost, burst_j=0.0, duration_s=_standalone_s(chip, rec.cost, first))
        assert rec.end_s - rec.start_s <= alone * (1 + 1e-9) + EPS_S, rec.name
        serial += schedule.multiplicity(rec) * alone
        host += schedule.multiplicity(rec) * rec.cost.n_kernels * chip.host_dispatch_s
    bound = serial + (host if result.phase == "train" else 0.0)
    assert result.latency_s <= bound * (1 + 1e-9)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_prefetch_hides_at_most_its_own_transfer(arch: str, model: str, kw: dict[str, object]) -> None:
    """Prefetching b bytes shortens an op by at most b / home bandwidth."""
    chip, result = _run(arch, model, kw)
    bw = home_bandwidth(chip)
    for rec in result.schedule.records:
        floor = rec.cost.latency_s - rec.prefetched_bytes / bw
        assert rec.end_s - rec.start_s >= floor * (1 - 1e-9) - EPS_S, rec.name


def test_prefetch_does_not_stall_the_op_that_runs_next() -> None:
    """A prefetch streams only until the next op starts: the op that runs next (here a parallel
    branch, not the prefetch target) takes no longer than it does alone."""
    chip = hwsim.load_arch("h100-sxm")
    graph = OperatorGraph()
    graph.add_op("norm", Elementwise("rmsnorm", 8, 4096))
    graph.add_op("big", MatMul(1024, 2048, 2048, b_is_weight=False), ["norm"])  # port idle at its end
    graph.add_op("after_big", MatMul(8, 4096, 4096), ["big"])  # node i + 1: the prefetch target
    graph.add_op("side", MatMul(8, 4096, 4096), ["norm"])  # parallel branch: actually runs next
    graph.add_op("join", Elementwise("add", 8, 4096), ["after_big", "side"])
    workload = Workload("branches", "prefill", (Pass("p", (Segment("s", graph),), tokens=8),), {}, {})
    records = {r.name: r for r in hwsim.simulate(workload, chip).schedule.records}
    order = sorted(records, key=lambda n: records[n].start_s)
    assert order == ["norm", "big", "side", "after_big", "join"]
    side = records["side"]
    assert side.end_s - side.start_s == pytest.approx(side.cost.latency_s, rel=1e-9)
