"""``hwsim simulate`` (one workload on one architecture) and ``hwsim compare`` (on several)."""

from __future__ import annotations

import json
from typing import Any

import click

from hwsim import report
from hwsim.api import simulate
from hwsim.arch.system import load_system
from hwsim.cli.group import EXIT_ERROR, echo_warnings, error_lines, main, refuse_warnings
from hwsim.cli.options import (
    DEFAULT_COMPARE_ARCHS,
    build_workload,
    decoding_options,
    json_option,
    plan_from_options,
    plan_options,
    pop_decoding,
    strict_option,
    workload_options,
)
from hwsim.errors import ConfigError, HwsimError
from hwsim.planner import rank_plans
from hwsim.result import Result


@main.command("simulate")
@click.option("--arch", default="h100-sxm", show_default=True,
              help="Architecture or system preset (see `hwsim list archs`, `hwsim list systems`) "
                   "or a YAML path.")
@workload_options
@plan_options
@decoding_options
@click.option("--ops", "show_ops", is_flag=True, help="Also show time per op (summed over layers).")
@json_option
@strict_option
def simulate_cmd(arch: str, model: str, phase: str, show_ops: bool, as_json: bool, strict: bool,
                 **opts: Any) -> None:
    """Simulate one model workload on one architecture (or a system, split by a
    parallelism plan: --tp, --pp, --dp, ...) and print its totals.

    What the run simplified or assumed is printed after the table as ``warning:`` lines
    on stderr (and is the ``warnings`` list of --json); --strict refuses such a result.
    """
    decoding = pop_decoding(opts)
    plan = plan_from_options(opts)
    workload = build_workload(model, phase, opts | decoding)
    result = simulate(workload, arch, plan=plan)
    if strict:
        refuse_warnings(result.warnings)
    if as_json:
        click.echo(result.to_json(include_ops=show_ops))
        return
    click.echo(report.format_summary(result))
    if show_ops:
        click.echo("")
        click.echo(report.format_ops(result))
    echo_warnings(result.warnings)


@main.command("compare")
@click.option("--arch", "archs", multiple=True, metavar="ARCH",
              help="Architecture preset or YAML path; repeat for each "
                   f"[default: {', '.join(DEFAULT_COMPARE_ARCHS)}].")
@workload_options
@click.option("--offload", is_flag=True, help="Systems: also try plans that offload to host memory.")
@json_option
@strict_option
def compare_cmd(archs: tuple[str, ...], model: str, phase: str, offload: bool, as_json: bool, strict: bool,
                **opts: Any) -> None:
    """Simulate one workload on several architectures, one row each.

    A multi-chip system (`hwsim list systems`) runs the workload with its best plan,
    found as `hwsim plan` finds it. An architecture that cannot run the workload (it
    does not fit, a dtype is not supported, its file is invalid) gets a row saying why;
    the exit status is 2 only if none could run it. What a run simplified or assumed is
    printed after the table as ``warning: ARCH: ...`` lines on stderr; with --strict such
    a run is refused (its row says why) and the exit status is 2.
    """
    workload = build_workload(model, phase, opts)
    outcomes: list[tuple[str, Result | str]] = []
    refused = False
    for name in archs or DEFAULT_COMPARE_ARCHS:
        try:
            arch, result = _compare_one(workload, name, offload)
        except HwsimError as exc:
            outcomes.append((name, "; ".join(error_lines(exc))))
            continue
        if strict and result.warnings:
            refused = True
            outcomes.append((arch, "refused (--strict): " + "; ".join(result.warnings)))
        else:
            outcomes.append((arch, result))
    if as_json:
        data = [json.loads(r.to_json()) if isinstance(r, Result) else {"arch": a, "error": r}
                for a, r in outcomes]
        click.echo(json.dumps(data, indent=2))
    else:
        title = f"{workload.name} {phase} ({', '.join(f'{k}={v}' for k, v in workload.params.items())})"
        click.echo(title)
        click.echo(report.format_compare(outcomes, request=phase == "request"))
        for arch, outcome in outcomes:
            if isinstance(outcome, Result):
                echo_warnings(outcome.warnings, prefix=f"{arch}: ")
    if refused or not any(isinstance(r, Result) for _, r in outcomes):
        raise click.exceptions.Exit(EXIT_ERROR)


def _compare_one(workload: Any, name: str, offload: bool) -> tuple[str, Result]:
    """Simulate on one chip, or on a system with its best plan (lowest latency)."""
    system = load_system(name)
    if system.n_chips == 1 and system.external_memory is None:
        return system.chip.name, simulate(workload, system.chip)
    search = rank_plans(workload, system, offload=offload)
    if not search.ranked:  # one reason is enough for a table cell; `hwsim plan` lists them all
        near = search.closest()
        why = f"closest: {near.reason}" if near else search.reasons(1)[0]
        raise ConfigError([f"no plan fits ({len(search.rejected)} tried; see `hwsim plan`); {why}"])
    assert search.best.result is not None
    return system.name, search.best.result
