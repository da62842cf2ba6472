"""``hwsim plan``: rank the parallelism plans of a workload on a multi-chip system."""

from __future__ import annotations

import json
from typing import Any

import click

from hwsim import report
from hwsim.cli.group import EXIT_ERROR, echo_warnings, main
from hwsim.cli.options import build_workload, json_option, workload_options
from hwsim.planner import OBJECTIVES, PlanSearch, rank_plans

GIB = 2**30
_COLUMNS = ["rank", "plan", "latency_ms", "tokens_per_s", "energy_per_token_j", "compute_utilization",
            "mem_per_chip_gib", "bound"]


def _ranked_rows(search: PlanSearch, top: int) -> list[list[Any]]:
    rows = []
    for i, p in enumerate(search.ranked[:top]):
        r = p.result
        assert r is not None
        mem = p.memory.total_bytes / GIB if p.memory else None
        rows.append([i + 1, p.plan.label(), r.latency_s * 1e3, r.tokens_per_s, r.energy_per_token_j,
                     r.compute_utilization, mem, r.bound])
    return rows


@main.command("plan")
@click.option("--arch", default="dgx-h100", show_default=True,
              help="System preset (see `hwsim list systems`) or YAML path.")
@workload_options
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default="latency_s", show_default=True,
              help="Rank by step latency, throughput or energy per token.")
@click.option("--offload", is_flag=True, help="Also try offloading to host memory (ZeRO-Offload/Infinity).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Plans to show.")
@click.option("--rejected", "show_rejected", is_flag=True, help="List every rejected plan with its reason.")
@json_option
def plan_cmd(arch: str, model: str, phase: str | None, objective: str, offload: bool, top: int,
             show_rejected: bool, as_json: bool, **opts: Any) -> None:
    """Enumerate the parallelism plans (tp, pp, dp, ep, micro-batches, recompute, ZeRO,
    offload) that fill a system, simulate the legal ones and print them ranked; say
    why each other plan was rejected."""
    workload = build_workload(model, phase, opts)
    phase = workload.phase
    search = rank_plans(workload, arch, objective=objective, offload=offload)
    if as_json:
        frame = search.to_frame()
        click.echo(json.dumps({"system": search.system, "workload": search.workload, "phase": phase,
                               "objective": objective,
                               "plans": json.loads(frame.to_json(orient="records"))}, indent=2))
        return
    click.echo(f"{search.workload} {phase} on {search.system}: {len(search.ranked)} plans ran, "
               f"{len(search.rejected)} rejected; ranked by {objective}")
    if search.ranked:
        click.echo(report.format_table(_COLUMNS, _ranked_rows(search, top)))
        echo_warnings(list(dict.fromkeys(w for p in search.ranked if p.result for w in p.result.warnings)))
    click.echo("")
    if show_rejected:
        rows = [[p.plan.label() or "single chip", p.reason] for p in search.rejected]
        click.echo(report.format_table(["plan", "rejected_because"], rows))
    elif search.rejected:
        click.echo("rejected (kinds of reason, most frequent first; --rejected lists every plan):")
        for line in search.reasons(8):
            click.echo(f"  {line}")
    if not search.ranked:
        near = search.closest()
        if near is not None:
            label = near.plan.label() or "single chip"
            reason = near.reason or ""  # a memory reason starts with the plan's label already
            click.echo(f"closest to fitting: {reason if reason.startswith(label) else f'{label}: {reason}'}")
        raise click.exceptions.Exit(EXIT_ERROR)
