"""``hwsim compare``: one workload on several architectures, one row each; with ``--serve``,
requests served on each system, costed in a datacenter and ranked by cost per million
tokens with the constraint that binds each (:func:`hwsim.compare_serving`,
docs/datacenter.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from hwsim import report
from hwsim.api import simulate
from hwsim.arch.system import load_system
from hwsim.cli.group import EXIT_ERROR, echo_warnings, error_lines, main
from hwsim.cli.options import (
    DEFAULT_COMPARE_ARCHS,
    build_workload,
    json_option,
    slo_from_options,
    strict_option,
    workload_options,
)
from hwsim.engine.serve.requests import Requests
from hwsim.errors import ConfigError, HwsimError
from hwsim.planner import rank_plans
from hwsim.ranking import DEFAULT_SERVING_ARCHS, RANK_KEYS, ServingComparison, compare_serving
from hwsim.report import format_table
from hwsim.result import Result
from hwsim.workload.dlrm import resolve_dlrm

F = TypeVar("F", bound=Callable[..., Any])


#: Requests of a serving comparison when --requests is not given: small enough that six
#: 70B systems run in seconds, large enough to fill most replicas' batches.
DEFAULT_N_REQUESTS = 256
DEFAULT_SERVING_MODEL = "llama3-70b"
#: ``hwsim compare`` options that describe a single-step workload, not a serving run.
_NOT_SERVING = ("phase", "batch", "context_len", "new_tokens", "seq_len", "attention_impl", "sparsity",
                "attention_window", "attention_density", "attention_approx", "offload", "strict", "n_chips",
                "sharding", "embedding_dtype")


def serving_compare_options(func: F) -> F:
    """The options of the serving mode of ``hwsim compare``."""
    options = [
        click.option("--serve", "serving", is_flag=True,
                     help="Serving mode: requests served on each system, costed in a datacenter, ranked "
                          f"[default archs: {', '.join(DEFAULT_SERVING_ARCHS)}; "
                          f"model {DEFAULT_SERVING_MODEL}]."),
        click.option("--requests", "n_requests", type=click.IntRange(min=1), default=None,
                     help=f"--serve: requests per run [default: {DEFAULT_N_REQUESTS}, offline]."),
        click.option("--output-len", type=click.IntRange(min=1), default=None,
                     help="--serve: output tokens per request [default: 128]."),
        click.option("--rate", "rate_per_s", type=float, default=None,
                     help="--serve: Poisson arrivals at this many requests/s [default: offline]."),
        click.option("--datacenter", default="default", show_default=True,
                     help="--serve: facility preset (arch_configs/datacenter/*.yaml: default, hyperscale, "
                          "enterprise-air) or a YAML path."),
        click.option("--rank-by", type=click.Choice(list(RANK_KEYS)), default="usd_per_million_tokens",
                     show_default=True, help="--serve: what orders the ranking."),
        click.option("--budget-usd", type=float, default=None,
                     help="--serve: capital budget; adds the tokens/s it buys on each system."),
        click.option("--slo-ttft-ms", type=float, default=None,
                     help="--serve: TTFT limit (ms); ranks goodput."),
        click.option("--slo-tpot-ms", type=float, default=None,
                     help="--serve: TPOT limit (ms); ranks goodput."),
        click.option("--slo-e2e-ms", type=float, default=None, help="--serve: end-to-end limit (ms)."),
        click.option("--slo-percentile", type=float, default=None,
                     help="--serve: percentile that must meet each limit [default: 99]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def pop_serving_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Take the serving options out of ``opts`` (so the workload options remain)."""
    keys = ("serving", "n_requests", "output_len", "rate_per_s", "datacenter", "rank_by", "budget_usd",
            "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms", "slo_percentile")
    return {k: opts.pop(k) for k in keys if k in opts}


def run_serving_compare(ctx: click.Context, archs: tuple[str, ...], model: str, as_json: bool,
                        serving: dict[str, Any], opts: dict[str, Any]) -> None:
    """Run the serving comparison of ``hwsim compare --serve`` and print it."""
    given = [f"--{k.replace('_', '-')}" for k in _NOT_SERVING
             if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE]
    if given:
        raise ConfigError([f"{', '.join(given)}: not used with --serve (a serving run has no phase or batch; "
                           "lengths are --prompt-len and --output-len)"])
    if ctx.get_parameter_source("model") != ParameterSource.COMMANDLINE:
        model = DEFAULT_SERVING_MODEL
    elif resolve_dlrm(model) is not None:
        raise ConfigError([f"--model {model}: a recommendation model has no token serving; compare its "
                           "steps without --serve (hwsim compare --model ... --phase inference)"])
    requests = _requests(serving.get("n_requests") or DEFAULT_N_REQUESTS, serving.get("rate_per_s"),
                         opts.get("prompt_len") or 512, serving.get("output_len") or 128)
    extra = {k: opts[k] for k in ("n_layers", "precision", "weight_dtype", "kv_dtype") if opts.get(k)}
    comparison = compare_serving(archs or DEFAULT_SERVING_ARCHS, model=model, requests=requests,
                                 dtype=opts.get("dtype") or "bf16", slo=slo_from_options(serving),
                                 datacenter=serving.get("datacenter"), rank_by=serving["rank_by"],
                                 budget_usd=serving.get("budget_usd"), **extra)
    if as_json:
        click.echo(comparison.to_json())
    else:
        click.echo(format_serving_comparison(comparison))
        for row in comparison.rows:
            echo_warnings(row.get("warnings", []), prefix=f"{row['arch']}: ")
    if not any(r.get("fits") for r in comparison.rows):
        raise click.exceptions.Exit(EXIT_ERROR)


_COLUMNS = (("rank", "rank"), ("arch", "arch"), ("plan", "plan"), ("n_chips", "chips"),
            ("output_tokens_per_s", "tok/s"), ("tokens_per_s_per_chip", "tok/s/chip"),
            ("chips_per_rack", "chips/rack"), ("tokens_per_s_per_rack", "tok/s/rack"),
            ("tokens_per_s_per_kw", "tok/s/kW"), ("tokens_per_usd", "tok/$"),
            ("usd_per_million_tokens", "$/Mtok"), ("why", "why"))


def format_serving_comparison(comparison: ServingComparison) -> str:
    """The ranked table, a title naming the model, requests and datacenter, and the notes."""
    dc = comparison.datacenter
    columns = [label for _, label in _COLUMNS]
    if any("budget_tokens_per_s" in r for r in comparison.rows):
        columns.insert(-1, "budget tok/s")
    table = []
    for row in comparison.rows:
        cells = [row.get(key) for key, _ in _COLUMNS]
        if row.get("chips_per_rack") is not None:  # say what fills the rack: its power or its space
            cells[6] = f"{row['chips_per_rack']} ({row['rack_binding']})"
        if "budget tok/s" in columns:
            cells.insert(-1, row.get("budget_tokens_per_s"))
        table.append(cells)
    title = (f"{comparison.model} serving: {comparison.requests}; datacenter {dc.name} (PUE {dc.pue:g}, "
             f"{dc.usd_per_kwh:g} USD/kWh, {dc.rack_power_w / 1e3:g} kW racks, {dc.lifetime_years:g} years, "
             f"{dc.utilization:.0%} utilised); ranked by {comparison.rank_by}")
    lines = [title, format_table(columns, table), f"recommendation: {comparison.recommendation}"]
    lines += [f"note: {note}" for note in comparison.notes]
    return "\n".join(lines)


def _requests(n: int, rate_per_s: float | None, prompt_len: int, output_len: int) -> Requests:
    """Offline requests, or Poisson arrivals at ``rate_per_s`` (0 or inf: offline)."""
    if rate_per_s is None or rate_per_s == 0 or rate_per_s == math.inf:
        return Requests.offline(n, prompt_len, output_len, 0)
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ConfigError([f"--rate: must be a number of requests/s > 0 (0 or inf: offline), "
                           f"got {rate_per_s:g}"])
    return Requests.poisson(n, rate_per_s, prompt_len, output_len, 0)


@main.command("compare")
@click.option("--arch", "archs", multiple=True, metavar="ARCH",
              help="Architecture preset or YAML path; repeat for each "
                   f"[default: {', '.join(DEFAULT_COMPARE_ARCHS)}].")
@workload_options
@click.option("--offload", is_flag=True, help="Systems: also try plans that offload to host memory.")
@serving_compare_options
@json_option
@strict_option
@click.pass_context
def compare_cmd(ctx: click.Context, archs: tuple[str, ...], model: str, phase: str | None, offload: bool,
                as_json: bool, strict: bool, **opts: Any) -> None:
    """Simulate one workload on several architectures, one row each; with --serve, serve
    requests on each and rank them by cost per million tokens in a datacenter.

    A multi-chip system (`hwsim list systems`) runs the workload with its best plan,
    found as `hwsim plan` finds it. An architecture that cannot run the workload (it
    does not fit, a dtype is not supported, its file is invalid) gets a row saying why;
    the exit status is 2 only if none could run it. What a run simplified or assumed is
    printed after the table as ``warning: ARCH: ...`` lines on stderr; with --strict such
    a run is refused (its row says why) and the exit status is 2.

    \b
    --serve (docs/datacenter.md): each system serves the same requests (default 256
    offline, capped so the run takes seconds) with the fastest of a few plans; the table
    gives tokens/s, per chip, per rack, per kW, per dollar and the cost per million output
    tokens, ranked, with the binding constraint ("why"). A system that cannot hold the
    model is a row saying so, with the numbers.
      hwsim compare --serve
      hwsim compare --serve --arch dgx-b200 --arch wse3 --model llama3-70b --datacenter hyperscale
    """
    serving = pop_serving_options(opts)
    if serving.get("serving"):
        run_serving_compare(ctx, archs, model, as_json, serving, opts)
        return
    given = [f"--{k.replace('_', '-')}" for k in serving
             if k != "serving" and ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE]
    if given:
        raise ConfigError([f"{', '.join(given)}: only used with --serve"])
    workload = build_workload(model, phase, opts)
    phase = workload.phase
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
