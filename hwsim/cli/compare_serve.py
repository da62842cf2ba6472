"""``hwsim compare --serve``: serving throughput, racks, power and cost per million tokens on
several systems, ranked, with the binding constraint of each (:func:`hwsim.compare_serving`).

The options are added to ``hwsim compare`` by :func:`serving_compare_options`; the command
hands them to :func:`run_serving_compare` when ``--serve`` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from hwsim.cli.group import EXIT_ERROR, echo_warnings
from hwsim.cli.serve import build_requests, build_slo, slo_options
from hwsim.errors import ConfigError
from hwsim.ranking import DEFAULT_SERVING_ARCHS, RANK_KEYS, ServingComparison, compare_serving
from hwsim.report import format_table

F = TypeVar("F", bound=Callable[..., Any])

#: Requests of a serving comparison when --requests is not given: small enough that six
#: 70B systems run in seconds, large enough to fill most replicas' batches.
DEFAULT_N_REQUESTS = 256
DEFAULT_SERVING_MODEL = "llama3-70b"
#: ``hwsim compare`` options that describe a single-step workload, not a serving run.
_NOT_SERVING = ("phase", "batch", "context_len", "new_tokens", "seq_len", "attention_impl", "sparsity",
                "offload", "strict")


def serving_compare_options(func: F) -> F:
    """The options of the serving mode of ``hwsim compare``."""
    options = [
        click.option("--serve", "serving", is_flag=True,
                     help="Serving mode: requests served on each system, costed in a datacenter, ranked "
                          f"[default archs: {', '.join(DEFAULT_SERVING_ARCHS)}; model {DEFAULT_SERVING_MODEL}]."),
        click.option("--requests", "n_requests", type=click.IntRange(min=1), default=None,
                     help=f"--serve: requests per run [default: {DEFAULT_N_REQUESTS}, offline]."),
        click.option("--output-len", type=click.IntRange(min=1), default=None,
                     help="--serve: output tokens per request [default: 128]."),
        click.option("--rate", "rate_per_s", type=float, default=None,
                     help="--serve: Poisson arrivals at this many requests/s [default: offline]."),
        click.option("--datacenter", default="default", show_default=True,
                     help="--serve: facility preset (datacenter/*.yaml: default, hyperscale, enterprise-air) "
                          "or a YAML path."),
        click.option("--rank-by", type=click.Choice(list(RANK_KEYS)), default="usd_per_million_tokens",
                     show_default=True, help="--serve: what orders the ranking."),
        click.option("--budget-usd", type=float, default=None,
                     help="--serve: capital budget; adds the tokens/s it buys on each system."),
    ]
    func = slo_options(func)
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
    requests = build_requests({"n_requests": serving.get("n_requests") or DEFAULT_N_REQUESTS,
                               "rate_per_s": serving.get("rate_per_s"), "prompt_len": opts.get("prompt_len"),
                               "output_len": serving.get("output_len")})
    extra = {"n_layers": opts["n_layers"]} if opts.get("n_layers") else {}
    comparison = compare_serving(archs or DEFAULT_SERVING_ARCHS, model=model, requests=requests,
                                 dtype=opts.get("dtype") or "bf16", slo=build_slo(serving),
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
