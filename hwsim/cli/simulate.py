"""``hwsim simulate``: one workload on one architecture (``hwsim compare``: :mod:`hwsim.cli.compare`)."""

from __future__ import annotations

from typing import Any

import click

from hwsim import report
from hwsim.api import simulate
from hwsim.cli.group import echo_warnings, main, refuse_warnings
from hwsim.cli.options import (
    build_workload,
    decoding_options,
    json_option,
    parse_params,
    plan_from_options,
    plan_options,
    pop_decoding,
    strict_option,
    workload_options,
)
from hwsim.errors import ConfigError
from hwsim.workload.dlrm import resolve_dlrm
from hwsim.workload.pruning import approximate_attention, parse_approx


@main.command("simulate")
@click.option("--arch", default="h100-sxm", show_default=True,
              help="Architecture or system preset (see `hwsim list archs`, `hwsim list systems`) "
                   "or a YAML path.")
@workload_options
@plan_options
@decoding_options
@click.option("--attention-pruning", "attention_pruning", multiple=True, metavar="KEY=VALUE",
              help="Approximate every attention as a research design does (docs/research_designs.md), "
                   "e.g. selection=topk token_keep=0.5 head_keep=0.8, or selection=sanger score_keep=0.2; "
                   "a list gives one fraction per layer (token_keep=[1,0.9,...]). Single chip, inference.")
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
    approx = parse_params("--attention-pruning", opts.pop("attention_pruning", ()))
    plan = plan_from_options(opts)
    if resolve_dlrm(model) is not None:
        _check_recsys(model, plan is not None, bool(approx))
    workload = build_workload(model, phase, opts | decoding)
    if approx:
        if plan is not None:
            raise ConfigError(["--attention-pruning: approximated attention runs on one chip; "
                               "drop the parallelism options (--tp, --pp, --dp, ...)"])
        workload = approximate_attention(workload, parse_approx(approx, "--attention-pruning"))
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


def _check_recsys(model: str, has_plan: bool, has_approx: bool) -> None:
    """Refuse the options a recommendation model has no use for, naming what it takes instead."""
    problems = []
    if has_plan:
        problems.append(f"--model {model}: a recommendation model is spread over chips by --n-chips and "
                        "--sharding, not by a parallelism plan (--tp, --pp, --dp, ...)")
    if has_approx:
        problems.append(f"--attention-pruning: {model} is a recommendation model; it has no attention")
    if problems:
        raise ConfigError(problems)
