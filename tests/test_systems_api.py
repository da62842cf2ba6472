"""Simulating a workload split over a multi-chip system by a parallelism plan."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.errors import ConfigError


def _decode() -> hwsim.Workload:
    return hwsim.load_workload("llama2-13b", phase="decode", batch=16, context_len=1024, n_layers=8)


def test_tensor_parallel_decode_is_faster_and_costs_link_energy() -> None:
    w = _decode()
    one = hwsim.simulate(w, "dgx-h100")
    tp8 = hwsim.simulate(w, "dgx-h100", plan=hwsim.Plan(tp=8))
    assert tp8.latency_s < one.latency_s
    assert tp8.energy_breakdown_j["interconnect_j"] > 0
    assert tp8.params["n_chips"] == 8
    # The same weights are read once in all: eight shards of 1/8.
    assert tp8.bytes_by_level["hbm_bytes"] == pytest.approx(one.bytes_by_level["hbm_bytes"], rel=0.05)


def test_more_link_bandwidth_is_never_slower() -> None:
    system = hwsim.load_system("dgx-h100")
    fabric = system.fabrics[0]
    link = fabric.link.model_copy(update={"bandwidth_bytes_per_s": fabric.link.bandwidth_bytes_per_s * 4})
    faster = system.model_copy(update={"fabrics": (fabric.model_copy(update={"link": link}),)})
    w = hwsim.load_workload("llama2-13b", phase="prefill", batch=4, prompt_len=1024, n_layers=4)
    plan = hwsim.Plan(tp=8)
    assert hwsim.simulate(w, faster, plan=plan).latency_s <= hwsim.simulate(w, system, plan=plan).latency_s


def test_fold_and_no_fold_agree_under_a_plan() -> None:
    w = hwsim.load_workload("llama2-7b", phase="train", batch=8, seq_len=256, n_layers=5)
    plan = hwsim.Plan(tp=2, dp=4)
    a = hwsim.simulate(w, "dgx-h100", plan=plan)
    b = hwsim.simulate(w, "dgx-h100", plan=plan, fold=False)
    assert a.latency_s == pytest.approx(b.latency_s, rel=1e-9)
    assert a.energy_j == pytest.approx(b.energy_j, rel=1e-9)


def test_pipeline_with_more_microbatches_has_higher_throughput() -> None:
    w = hwsim.load_workload("llama2-13b", phase="train", batch=16, seq_len=256, n_layers=8)
    slow = hwsim.simulate(w, "dgx-h100", plan=hwsim.Plan(pp=4, dp=2, microbatches=1))
    fast = hwsim.simulate(w, "dgx-h100", plan=hwsim.Plan(pp=4, dp=2, microbatches=8))
    assert fast.latency_s < slow.latency_s


def test_plan_larger_than_the_system_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs 16 chips; the system has 8"):
        hwsim.simulate(_decode(), "dgx-h100", plan=hwsim.Plan(tp=8, dp=2))


def test_plan_on_a_single_operator_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="single operator"):
        hwsim.simulate(hwsim.ops.gemm(64, 64, 64), "dgx-h100", plan=hwsim.Plan(tp=2))


def test_cli_simulate_with_tp() -> None:
    from click.testing import CliRunner

    from hwsim.cli import main

    out = CliRunner().invoke(main, ["simulate", "--arch", "dgx-h100", "--model", "llama2-7b",
                                    "--phase", "decode", "--tp", "4", "--json"])
    assert out.exit_code == 0, out.output
    assert '"plan": "tp4"' in out.output
    bad = CliRunner().invoke(main, ["simulate", "--arch", "dgx-h100", "--model", "llama2-7b", "--tp", "3"])
    assert bad.exit_code == 2 and "does not divide" in bad.output and "Traceback" not in bad.output
    invalid = CliRunner().invoke(main, ["simulate", "--arch", "tpu-v4-64", "--model", "mixtral-8x7b",
                                        "--dp", "3", "--ep", "2"])
    assert invalid.exit_code == 2 and "plan: <root>: ep=2 must divide dp=3" in invalid.output


@pytest.mark.parametrize("plan", [
    hwsim.Plan(dp=8), hwsim.Plan(tp=8), hwsim.Plan(tp=2, dp=4),
    hwsim.Plan(pp=4, dp=2, microbatches=8), hwsim.Plan(pp=2, tp=4, microbatches=2),
])
def test_a_plan_conserves_the_steps_flops(plan: hwsim.Plan) -> None:
    """All chips together do the step's work once (collective reductions add < 1 %)."""
    w = hwsim.load_workload("llama2-13b", phase="train", batch=16, seq_len=256, n_layers=8)
    one = hwsim.simulate(w, "dgx-h100")
    split = hwsim.simulate(w, "dgx-h100", plan=plan)
    assert split.flops == pytest.approx(one.flops, rel=0.01)
    assert split.flops >= one.flops * (1 - 1e-9)


def test_overlapped_gradient_reduction_hides_under_later_layers() -> None:
    """Layers of [GEMM -> overlapped all-reduce] then an optimizer: every reduction but the
    last hides under the next layer's GEMM (the GEMM outlasts it); the optimizer waits
    for the last one. Without overlap each reduction adds its full time."""
    from hwsim.workload.graph import OperatorGraph, Pass, Segment, Workload
    from hwsim.workload.ops import Collective, MatMul, Optimizer

    def workload(overlap: bool) -> Workload:
        layer = OperatorGraph()
        layer.add_op("gemm", MatMul(4096, 4096, 4096))
        layer.add_op("sync", Collective("all_reduce", 32e6, "dp", 8, overlap=overlap), ["gemm"])
        opt = OperatorGraph()
        opt.add_op("adamw", Optimizer(1000))
        passes = (Pass("train", (Segment("layer", layer, 6), Segment("opt", opt))),)
        return Workload("t", "op", passes, {}, {"dtype": "bf16"})

    system = hwsim.load_system("dgx-h100")
    cache = hwsim.CostCache(system.chip, system)
    gemm = cache(MatMul(4096, 4096, 4096)).latency_s
    sync = cache(Collective("all_reduce", 32e6, "dp", 8)).latency_s
    assert sync < gemm
    hidden = hwsim.simulate(workload(True), system, fold=False).latency_s
    exposed = hwsim.simulate(workload(False), system, fold=False).latency_s
    assert exposed - hidden == pytest.approx(5 * sync, rel=0.05)
