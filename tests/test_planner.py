"""Automatic plans: every enumerated plan is ranked or rejected with its reason."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import hwsim
from hwsim.cli import main
from hwsim.errors import ConfigError
from hwsim.planner import rank_plans
from hwsim.workload.plans import enumerate_plans


def _decode(n_layers: int = 8) -> hwsim.Workload:
    return hwsim.load_workload("llama2-13b", phase="decode", batch=16, context_len=1024, n_layers=n_layers)


def test_every_plan_is_ranked_or_rejected_and_ranked_in_order() -> None:
    w = _decode()
    search = rank_plans(w, "dgx-h100")
    enumerated = {p for p, _ in enumerate_plans(w.spec.model_copy(update={"num_hidden_layers": 8}),
                                                "decode", 8, batch=16, context_len=1024)}
    assert {p.plan for p in search.ranked} | {p.plan for p in search.rejected} == enumerated
    latencies = [p.result.latency_s for p in search.ranked]
    assert latencies == sorted(latencies)
    assert all(p.reason for p in search.rejected)
    assert search.best.plan == search.ranked[0].plan


def test_best_plan_is_the_one_a_direct_simulation_gives() -> None:
    w = _decode()
    best = rank_plans(w, "dgx-h100").best
    again = hwsim.simulate(w, "dgx-h100", plan=best.plan)
    assert again.latency_s == pytest.approx(best.result.latency_s, rel=1e-12)


def test_throughput_objective_ranks_descending() -> None:
    search = rank_plans(_decode(), "dgx-h100", objective="tokens_per_s")
    rates = [p.result.tokens_per_s for p in search.ranked]
    assert rates == sorted(rates, reverse=True)


def test_plans_that_do_not_fit_say_by_how_much() -> None:
    w = hwsim.load_workload("llama2-70b", phase="decode", batch=8, context_len=1024)
    search = rank_plans(w, "dgx-h100")
    single = [p for p in search.rejected if p.plan.n_chips == 8 and p.plan.tp == 1 and p.plan.dp == 8]
    assert single and "exceeds hbm" in single[0].reason and "short by" in single[0].reason


def test_recompute_is_dominated_when_the_plan_fits_without_it() -> None:
    w = hwsim.load_workload("llama2-7b", phase="train", batch=8, seq_len=512, n_layers=4)
    search = rank_plans(w, "dgx-h100", microbatch_options=(1,), zero_options=(0,))
    dominated = [p for p in search.rejected if p.reason and p.reason.startswith("dominated")]
    assert dominated and all(p.plan.recompute for p in dominated)
    assert not any(p.plan.recompute for p in search.ranked)


def test_weight_streaming_is_found_where_nothing_else_fits() -> None:
    w = hwsim.load_workload("llama2-70b", phase="decode", batch=4, context_len=512)
    best = rank_plans(w, "cs2-weight-streaming").best
    assert "weights" in best.plan.offload


def test_no_legal_plan_is_a_clear_error() -> None:
    w = hwsim.load_workload("llama2-70b", phase="decode", batch=4, context_len=512)
    search = rank_plans(w, "h100-sxm")
    with pytest.raises(ConfigError, match="no plan runs"):
        _ = search.best


def test_bad_objective_and_single_op_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="objective"):
        rank_plans(_decode(), "dgx-h100", objective="speed")
    with pytest.raises(ConfigError, match="single operator"):
        rank_plans(hwsim.ops.gemm(64, 64, 64), "dgx-h100")


def test_cli_plan_prints_ranked_plans_and_json() -> None:
    args = ["plan", "--arch", "dgx-h100", "--model", "llama2-13b", "--phase", "decode", "--batch", "16",
            "--n-layers", "4", "--top", "3"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "latency_ms" in out.output and "tp8" in out.output
    data = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    ranks = [p["rank"] for p in data["plans"] if p["rank"] is not None]
    assert ranks == list(range(1, len(ranks) + 1))


def test_cli_plan_unknown_system_is_one_error_line() -> None:
    out = CliRunner().invoke(main, ["plan", "--arch", "dgx-h1000", "--n-layers", "2"])
    assert out.exit_code == 2
    assert "error:" in out.output and "Traceback" not in out.output


def test_cli_compare_puts_systems_with_their_best_plan_side_by_side() -> None:
    args = ["compare", "--arch", "dgx-h100", "--arch", "tpu-v4-64", "--arch", "h100-sxm",
            "--model", "llama2-13b", "--phase", "decode", "--batch", "16", "--n-layers", "4"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "plan" in lines[1] and "chips" in lines[1]
    assert any(line.startswith("dgx-h100") and " 8 " in line for line in lines)
    assert any(line.startswith("tpu-v4-64") and " 64 " in line for line in lines)
