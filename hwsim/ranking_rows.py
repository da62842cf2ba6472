"""One row of :func:`hwsim.ranking.compare_serving`: a system's best serving run, its rack,
power and cost figures, and the constraint that binds it.

The "why" names the binding constraint, tested in this order:

1. **SLO**: with an SLO, the run's percentile of TTFT, TPOT or E2E is over its limit.
2. **offered load**: requests arrived over time and the run completed at least 80 % of the
   arrival rate (arrival rate = Little's ``arrival_rate_x_mean_e2e`` / mean E2E), so the
   arrivals, not the hardware, set the throughput.
3. **power**: the chips average at least 95 % of their ``power_limit_w``.
4. **memory capacity**: the KV cache filled (peak use >= 95 % of its blocks, or a request
   was preempted), so memory capacity capped the batch.
5. **bandwidth** or **compute**: a roofline of the decode step at the run's mean batch per
   replica: the home memory's time for weights plus the KV in use, against the matrix
   units' peak time for 2 FLOPs per weight per sequence; the larger binds. A roofline
   estimate, not the simulator's own time split.

The cost driver (capex, energy or rental share of the cost) follows it.
"""

from __future__ import annotations

import math
from typing import Any

from hwsim.arch.system import System, load_system
from hwsim.cost.datacenter import Datacenter, Node, node_power_w, rack_fit, sustained_chip_power_w, tco
from hwsim.datacenter import load_node
from hwsim.dtypes import dtype_bytes
from hwsim.engine.serve.metrics import SLO
from hwsim.errors import HwsimError
from hwsim.ranking_search import Evaluator, ServingPoint, _rate, _search, candidate_plans, plan_label
from hwsim.workload.plan import Plan

_NAN = math.nan


def _problems(exc: HwsimError) -> str:
    return "; ".join(getattr(exc, "problems", None) or [str(exc)])


def row_for(arch: str | System, evaluate: Evaluator, dc: Datacenter, plan: Plan | None, use_goodput: bool,
            dtype: str, budget_usd: float | None, slo: SLO | None = None,
            weight_dtype: str | None = None) -> dict[str, Any]:
    """The row of one system (never raises for a bad system: the row says why)."""
    name = arch if isinstance(arch, str) else arch.name
    row: dict[str, Any] = {"rank": None, "arch": name, "fits": False, "why": "", "warnings": []}
    try:
        system = load_system(arch)
    except HwsimError as exc:
        return row | {"why": f"error: {_problems(exc)}"}
    row |= {"chip": system.chip.name, "n_chips": system.n_chips}
    best, point, tried = _search(system, evaluate, [plan] if plan else candidate_plans(system), use_goodput)
    row["plans_tried"] = [{"plan": p, "outcome": o} for p, o in tried]
    if best is None or point is None:
        reason = tried[-1][1] if tried else "no plan to try"
        return row | {"why": f"memory capacity: does not fit ({tried[-1][0] if tried else '-'}): {reason}"}
    tokens = _rate(point, use_goodput)
    row |= {"fits": True, "plan": plan_label(best), "n_chips_used": point.n_chips,
            "output_tokens_per_s": tokens, "tokens_per_s_per_chip": tokens / system.n_chips,
            "chip_power_w": point.average_power_w / point.n_chips, "warnings": list(point.warnings)}
    binding, detail = binding_constraint(system, point, dtype, slo if use_goodput else None, weight_dtype)
    try:
        node = load_node(system.chip.name)
    except HwsimError as exc:
        return row | {"binding": binding, "why": f"{binding}: {detail}; no cost: {_problems(exc)}"}
    costs = _costs(system, node, point, tokens, dc, budget_usd)
    row |= costs
    if row["chip_power_w"] > costs["sustained_chip_power_w"] * (1 + 1e-9):
        row["warnings"].append(
            f"simulated chip power {row['chip_power_w']:.0f} W exceeds the sustained limit "
            f"{costs['sustained_chip_power_w']:.0f} W (the chip preset has no power_limit_w to hold it to)")
    driver = _driver(costs)
    row |= {"node": node.name, "binding": binding, "why": f"{binding}: {detail}; {driver}"}
    return row


def _costs(system: System, node: Node, point: ServingPoint, tokens: float, dc: Datacenter,
           budget_usd: float | None) -> dict[str, Any]:
    """Rack, power and cost columns of a fitting row."""
    chip = system.chip
    sustained = sustained_chip_power_w(node, chip.power_limit_w)
    fit = rack_fit(node, node_power_w(node, sustained), dc)
    n_nodes = system.n_chips / node.n_chips  # a fraction: part of a node (one socket of two)
    host_w = (node.host_power_w + node.network_power_w) * n_nodes
    unused_idle_w = (system.n_chips - point.n_chips) * chip.idle_power_w
    serving_w = point.average_power_w + unused_idle_w + host_w
    idle_w = system.n_chips * chip.idle_power_w + host_w
    out: dict[str, Any] = {"sustained_chip_power_w": sustained, "chips_per_rack": fit.chips_per_rack,
                           "rack_binding": fit.binding, "rack_power_density_w": fit.rack_power_density_w,
                           "tokens_per_s_per_rack": tokens / system.n_chips * fit.chips_per_rack,
                           "it_power_w": serving_w, "facility_power_w": serving_w * dc.pue,
                           "tokens_per_s_per_kw": tokens / (serving_w / 1e3) if serving_w > 0 else _NAN}
    if tokens <= 0:
        return out | {"usd_per_million_tokens": _NAN, "tokens_per_usd": 0.0}
    cost = tco(node, dc, n_nodes=n_nodes, tokens_per_s=tokens, serving_w=serving_w, idle_w=idle_w)
    out |= {"usd_per_million_tokens": cost.usd_per_million_tokens,
            "tokens_per_usd": 1e6 / cost.usd_per_million_tokens,
            "capex_share": cost.capex_share, "energy_share": cost.energy_share,
            "rental_share": cost.rental_share}
    if budget_usd is not None:
        out["budget_tokens_per_s"] = tokens / n_nodes * _nodes_for(node, dc, budget_usd)
    return out


def _nodes_for(node: Node, dc: Datacenter, budget_usd: float) -> int:
    """Whole nodes a capital budget buys (rented: rents for the whole lifetime)."""
    if node.usd_per_chip_hour is not None:
        per_node = node.usd_per_chip_hour * node.n_chips * dc.lifetime_years * 365.25 * 24
    else:
        assert node.price_usd is not None
        per_node = node.price_usd + node.network_usd
    return math.floor(budget_usd / per_node) if per_node > 0 else 0


def _driver(costs: dict[str, Any]) -> str:
    shares = {k: costs.get(f"{k}_share", 0.0) for k in ("capex", "energy", "rental")}
    if not math.isfinite(costs.get("usd_per_million_tokens", _NAN)):
        return "no tokens to cost"
    top = max(shares, key=lambda k: shares[k])
    return f"cost {shares[top]:.0%} {top}"


def binding_constraint(system: System, point: ServingPoint, dtype: str, slo: SLO | None,
                       weight_dtype: str | None = None) -> tuple[str, str]:
    """The constraint that binds a run, and its numbers (order: module docstring)."""
    m, chip = point.metrics, system.chip
    if slo is not None and m.get("slo_met") == 0.0:
        for key, limit in (("ttft", slo.ttft_s), ("tpot", slo.tpot_s), ("e2e", slo.e2e_s)):
            value = _percentile(m, key, slo.percentile)
            if limit is not None and math.isfinite(value) and value > limit:
                return "SLO", f"p{slo.percentile:g} {key.upper()} {value * 1e3:.4g} ms > {limit * 1e3:.4g} ms"
    per_chip = point.average_power_w / point.n_chips if point.n_chips else _NAN
    if chip.power_limit_w and per_chip >= 0.95 * chip.power_limit_w:
        return "power", f"chips average {per_chip:.0f} W of their {chip.power_limit_w:.0f} W limit"
    lam_w, e2e = float(m.get("arrival_rate_x_mean_e2e", _NAN)), float(m.get("e2e_mean_s", _NAN))
    arrival_rate = lam_w / e2e if math.isfinite(lam_w) and e2e > 0 else _NAN  # NaN when offline
    done_rate = float(m.get("requests_per_s", _NAN))
    if math.isfinite(arrival_rate) and done_rate >= 0.8 * arrival_rate:
        # requests arrived over time and the system kept up with them: the offered load,
        # not the hardware, set the throughput
        return "offered load", (f"kept up with {arrival_rate:.3g} req/s arriving ({done_rate:.3g} req/s "
                                "done); a capacity search finds the rate it could sustain")
    batch = float(m.get("batch_size_mean", _NAN))
    kv_max, preempted = float(m.get("kv_usage_max", _NAN)), float(m.get("n_preemptions", 0.0))
    if preempted > 0 or kv_max >= 0.95:
        return "memory capacity", (f"KV cache full (peak {kv_max:.0%}, {preempted:.0f} preemptions), "
                                   f"mean batch {batch:.3g}")
    pools = point.config.get("pools") or []
    if not pools or not math.isfinite(batch):
        return "throughput", "no per-chip memory figures to place it on a roofline"
    pool = pools[0]
    weights = float(pool["weights_bytes_per_chip"])
    kv = float(m.get("kv_usage_mean", 0.0)) * float(pool["kv_bytes_per_chip"])
    home = chip.memory[chip.home_level]
    memory_s = (weights + kv) / home.bandwidth_bytes_per_s
    peak = chip.peak_flops_per_s(dtype)
    n_params = weights / dtype_bytes(weight_dtype or dtype)  # parameters held on one chip
    compute_s = 2.0 * n_params * batch / peak if peak > 0 else math.inf
    kind = "bandwidth" if memory_s >= compute_s else "compute"
    detail = (f"decode at mean batch {batch:.3g}: {(weights + kv) / 1e9:.3g} GB per chip per step "
              f"{memory_s * 1e3:.3g} ms at {home.bandwidth_bytes_per_s / 1e12:.3g} TB/s vs "
              f"{compute_s * 1e3:.3g} ms of math")
    per_replica = float(m.get("n_requests", math.inf)) / max(int(pool.get("replicas", 1)), 1)
    max_seqs = float((point.config.get("options") or {}).get("max_num_seqs", math.inf))
    if per_replica <= max_seqs:  # the run had too few requests to fill a replica's batch limit
        detail += f" (batch held to the run's {per_replica:.0f} requests per replica)"
    return kind, detail


def _percentile(metrics: Any, key: str, percentile: float) -> float:
    """The run's percentile of ``key`` (the nearest reported: p50, p90, p99)."""
    nearest = min((50, 90, 99), key=lambda p: abs(p - percentile))
    return float(metrics.get(f"{key}_p{nearest}_s", _NAN))
