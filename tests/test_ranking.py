"""Hardware selection for serving: :func:`hwsim.compare_serving` ranks systems by cost per
million tokens with the binding constraint, reports a model that does not fit with its
numbers, accepts any evaluator; ``hwsim compare --serve`` prints the ranked table or JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import hwsim
from hwsim.arch.system import System
from hwsim.cli import main
from hwsim.errors import ConfigError
from hwsim.ranking import candidate_plans, rank
from hwsim.workload.plan import Plan

SHORT = hwsim.Requests.offline(16, 128, 16, 0)


def fake(rates: dict[str, float], power_w: float = 500.0) -> Any:
    """An evaluator that serves ``rates[chip]`` tokens/s per chip on every chip of any plan."""

    def evaluate(system: System, plan: Plan) -> dict[str, Any]:
        if system.chip.name not in rates:
            raise ConfigError([f"{system.name}: does not fit: needs 131.4 GiB of weights"])
        n = system.n_chips
        return {"output_tokens_per_s": rates[system.chip.name] * n, "n_chips": n,
                "average_power_w": power_w * n}

    return evaluate


def test_rank_orders_by_cost_and_puts_misfits_last() -> None:
    """Cheapest first; a system the evaluator could not run is last, unranked, with its reason."""
    cmp = hwsim.compare_serving(["dgx-b200", "wse3", "hls-gaudi3"],
                                evaluate=fake({"b200-sxm": 1000, "gaudi3": 10}), plan=Plan(tp=8))
    arches = [r["arch"] for r in cmp.rows]
    assert arches == ["dgx-b200", "hls-gaudi3", "wse3"]
    assert [r["rank"] for r in cmp.rows] == [1, 2, None]
    assert cmp.rows[0]["usd_per_million_tokens"] < cmp.rows[1]["usd_per_million_tokens"]
    assert not cmp.rows[2]["fits"] and "131.4 GiB" in cmp.rows[2]["why"]
    assert cmp.recommendation.startswith("dgx-b200 (tp8)")


def test_more_tokens_per_second_is_never_dearer_per_token() -> None:
    """The same system at twice the throughput costs at most half as much per token (energy
    unchanged), and at least as much when its power doubles."""
    one = hwsim.compare_serving(["dgx-b200"], evaluate=fake({"b200-sxm": 100}), plan=Plan(tp=8)).rows[0]
    two = hwsim.compare_serving(["dgx-b200"], evaluate=fake({"b200-sxm": 200}), plan=Plan(tp=8)).rows[0]
    hot = hwsim.compare_serving(["dgx-b200"], evaluate=fake({"b200-sxm": 100}, 1000.0),
                                plan=Plan(tp=8)).rows[0]
    assert two["usd_per_million_tokens"] == pytest.approx(one["usd_per_million_tokens"] / 2)
    assert hot["usd_per_million_tokens"] > one["usd_per_million_tokens"]
    assert one["tokens_per_s_per_chip"] == pytest.approx(100)
    assert one["chips_per_rack"] == 16 and one["rack_binding"] == "power"  # 14.3 kW DGX in 40 kW
    assert one["tokens_per_s_per_rack"] == pytest.approx(1600)


def test_costs_follow_the_datacenter() -> None:
    """A dearer facility (PUE, $/kWh) never lowers the cost; a bigger budget buys more tokens/s."""
    evaluate = fake({"b200-sxm": 100})
    base = hwsim.compare_serving(["dgx-b200"], evaluate=evaluate, plan=Plan(tp=8), budget_usd=1e6).rows[0]
    dear = hwsim.compare_serving(["dgx-b200"], evaluate=evaluate, plan=Plan(tp=8), budget_usd=2e6,
                                 datacenter={"pue": 2.0, "usd_per_kwh": 0.3}).rows[0]
    assert dear["usd_per_million_tokens"] > base["usd_per_million_tokens"]
    # A DGX B200 node costs $515k + $20k of network: $1M buys 1 node (800 tok/s), $2M buys 3.
    assert base["budget_tokens_per_s"] == pytest.approx(800)
    assert dear["budget_tokens_per_s"] == pytest.approx(3 * 800)


def test_a_chip_without_a_node_preset_has_throughput_but_no_cost() -> None:
    """a100-sxm has no arch_configs/datacenter/nodes file: its row fits, has no cost and says why."""
    row = hwsim.compare_serving(["a100-sxm"], evaluate=fake({"a100-sxm": 50})).rows[0]
    assert row["fits"] and row["output_tokens_per_s"] == 50 and "no node preset" in row["why"]
    assert row["rank"] is None


def test_bad_arguments_are_config_errors() -> None:
    """An unknown rank key, a negative budget, a bad datacenter: ConfigError naming it."""
    with pytest.raises(ConfigError, match="rank_by"):
        hwsim.compare_serving(["dgx-b200"], evaluate=fake({}), rank_by="speed")
    with pytest.raises(ConfigError, match="budget_usd"):
        hwsim.compare_serving(["dgx-b200"], evaluate=fake({}), budget_usd=-1)
    with pytest.raises(ConfigError, match="datacenter: pue"):
        hwsim.compare_serving(["dgx-b200"], evaluate=fake({}), datacenter={"pue": 0.5})
    with pytest.raises(ConfigError, match="rank_by"):
        rank([], by="nope")
    row = hwsim.compare_serving(["no-such-system"], evaluate=fake({})).rows[0]
    assert not row["fits"] and row["why"].startswith("error:")


def test_candidate_plans_cover_tp_and_pp() -> None:
    """8 chips: tp 1, 2, 4, 8 with dp filling the system, then pp 2, 4, 8."""
    plans = candidate_plans(hwsim.load_system("dgx-b200"))
    assert [(p.tp, p.pp, p.dp) for p in plans] == [(1, 1, 8), (2, 1, 4), (4, 1, 2), (8, 1, 1),
                                                   (1, 2, 4), (1, 4, 2), (1, 8, 1)]


def test_real_serving_rows_for_a_cpu_and_a_wafer_that_cannot_hold_70b() -> None:
    """LLaMA-3-70B served on a Xeon (fits in DDR5, bandwidth bound) and on one WSE-3 (44 GB:
    does not fit, with the GiB figures); the Xeon's cost is positive and finite."""
    cmp = hwsim.compare_serving(["wse3", "xeon-8480"], model="llama3-70b", requests=SHORT)
    xeon, wse = cmp.rows
    assert xeon["arch"] == "xeon-8480" and xeon["fits"] and xeon["binding"] == "bandwidth"
    assert 0 < xeon["usd_per_million_tokens"] < float("inf")
    assert not wse["fits"] and "GiB of weights" in wse["why"]
    data = json.loads(cmp.to_json())
    assert data["rows"][0]["arch"] == "xeon-8480" and "16 requests" in data["requests"]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["compare", "--serve", *args])


def test_cli_serving_compare_prints_a_ranked_table() -> None:
    """compare --serve: a title, a ranked table with the why column, the recommendation and the
    request cap; a wafer that cannot hold the model is a row saying so."""
    res = invoke("--arch", "wse3", "--arch", "xeon-8480", "--requests", "16", "--prompt-len", "128",
                 "--output-len", "16")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("llama3-70b serving: 16 requests") and "PUE 1.58" in lines[0]
    header = lines[1].split()
    assert header[:3] == ["rank", "arch", "plan"] and "$/Mtok" in header and header[-1] == "why"
    assert lines[2].split()[:2] == ["1", "xeon-8480"]
    assert lines[3].split()[:2] == ["-", "wse3"] and "does not fit" in lines[3]
    assert any(line.startswith("recommendation: xeon-8480") for line in lines)
    assert any("16 requests" in line and line.startswith("note:") for line in lines)


def test_cli_serving_compare_json() -> None:
    """--json: the rows in rank order with their units, the datacenter and the recommendation."""
    res = invoke("--arch", "wse3", "--arch", "xeon-8480", "--requests", "8", "--prompt-len", "64",
                 "--output-len", "8", "--datacenter", "hyperscale", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["datacenter"]["pue"] == 1.1 and data["rank_by"] == "usd_per_million_tokens"
    first, second = data["rows"]
    assert first["rank"] == 1 and first["usd_per_million_tokens"] > 0 and first["tokens_per_s_per_kw"] > 0
    assert second["rank"] is None and second["fits"] is False


@pytest.mark.parametrize(("args", "message"), [
    (["--batch", "4"], "--batch: not used with --serve"),
    (["--datacenter", "nowhere"], "unknown datacenter preset"),
    (["--budget-usd", "-5"], "budget_usd"),
    (["--slo-ttft-ms", "0"], "--slo-ttft-ms"),
])
def test_cli_serving_compare_refuses_bad_options(args: list[str], message: str) -> None:
    """Bad serving options: exit 2 and one error line naming the problem, no traceback."""
    res = invoke("--arch", "xeon-8480", "--requests", "2", *args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_cli_serving_options_need_serve() -> None:
    """--datacenter without --serve is refused rather than silently ignored."""
    res = CliRunner().invoke(main, ["compare", "--datacenter", "hyperscale"])
    assert res.exit_code == 2 and "only used with --serve" in res.output


def test_binding_constraint_in_its_order() -> None:
    """SLO, offered load, power, KV capacity, then the decode roofline (bandwidth or compute)."""
    from hwsim.ranking import ServingPoint
    from hwsim.ranking_rows import binding_constraint

    system = hwsim.load_system("dgx-b200")
    pools = {"pools": [{"weights_bytes_per_chip": 70e9, "kv_bytes_per_chip": 50e9, "replicas": 1}],
             "options": {"max_num_seqs": 256}}

    def why(metrics: dict[str, float], power_w: float = 500.0, slo: hwsim.SLO | None = None) -> str:
        point = ServingPoint(1.0, 8, power_w * 8, {"n_requests": 1000.0, **metrics}, pools)
        return binding_constraint(system, point, "bf16", slo)[0]

    assert why({"slo_met": 0.0, "tpot_p99_s": 0.2}, slo=hwsim.SLO(tpot_s=0.05)) == "SLO"
    assert why({"arrival_rate_x_mean_e2e": 4.0, "e2e_mean_s": 1.0, "requests_per_s": 3.9}) == "offered load"
    assert why({"arrival_rate_x_mean_e2e": 4.0, "e2e_mean_s": 1.0, "requests_per_s": 1.0,
                "batch_size_mean": 1.0}) == "bandwidth"
    assert why({"batch_size_mean": 8.0}, power_w=990.0) == "power"  # b200-sxm: 1000 W limit
    assert why({"batch_size_mean": 8.0, "n_preemptions": 3.0}) == "memory capacity"
    # 70 GB at 8 TB/s is 8.75 ms; 2 x 35e9 weights x batch at 2.25 PFLOP/s passes it above batch ~280
    assert why({"batch_size_mean": 8.0, "kv_usage_mean": 0.0}) == "bandwidth"
    assert why({"batch_size_mean": 1000.0, "kv_usage_mean": 0.0}) == "compute"


def test_cli_lists_the_datacenter_presets() -> None:
    """hwsim list datacenters / nodes: one row per shipped preset, JSON with units in the keys."""
    res = CliRunner().invoke(main, ["list", "datacenters", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["default"]["pue"] == 1.58 and rows["hyperscale"]["rack_power_w"] == 130000
    res = CliRunner().invoke(main, ["list", "nodes"])
    assert res.exit_code == 0 and "dgx-b200" in res.stdout and "tpu-v6e-host" in res.stdout


def test_issue_17_systems_side_by_side_on_llama3_70b() -> None:
    """The six systems of issue 17's "done when" serve LLaMA-3-70B, each with a finite cost, a
    rank and a binding constraint."""
    cmp = hwsim.compare_serving(model="llama3-70b", requests=hwsim.Requests.offline(32, 256, 32, 0))
    assert sorted(r["arch"] for r in cmp.rows) == sorted(hwsim.ranking.DEFAULT_SERVING_ARCHS)
    assert [r["rank"] for r in cmp.rows] == [1, 2, 3, 4, 5, 6]
    costs = [r["usd_per_million_tokens"] for r in cmp.rows]
    assert costs == sorted(costs) and all(0 < c < 1e3 for c in costs)
    assert all(r["binding"] in ("bandwidth", "compute", "memory capacity", "power") for r in cmp.rows)
    assert {r["arch"]: r["rental_share"] for r in cmp.rows}["tpu-v6e-8"] == 1.0
