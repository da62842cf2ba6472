"""``hwsim serve``: requests arriving over time, served on a chip or system (:func:`hwsim.serve`).

With ``--find-capacity`` the command searches instead of serving once
(:func:`hwsim.find_capacity`; with ``--rate R``, :func:`hwsim.find_replicas`, ``--dp``
capping the count) and prints every evaluated point.

The command is built from option groups that other serving commands can share
(:func:`request_options`, :func:`deployment_options`, :func:`scheduler_options`,
:func:`slo_options`) and functions that turn parsed options into the API's arguments
(:func:`build_requests`, :func:`serve_arguments`), so a capacity search can reuse them
as they are. The table goes to stdout, warnings to stderr as ``warning: <line>``; with
``--json`` stdout is the summary alone.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, TypeVar

import click
from pydantic import ValidationError

from hwsim import report
from hwsim._yaml import validation_problems
from hwsim.api import find_capacity as find_capacity_api
from hwsim.api import find_replicas, serve
from hwsim.cli.group import main
from hwsim.cli.options import decoding_options, pop_decoding, precision_options, slo_from_options
from hwsim.engine.serve.capacity import CapacityResult, ReplicaResult
from hwsim.engine.serve.profiles import PROFILES
from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.result import ServeResult
from hwsim.engine.serve.scheduler import POLICIES
from hwsim.errors import ConfigError
from hwsim.serve_files import write_run
from hwsim.workload.plan import Plan

F = TypeVar("F", bound=Callable[..., Any])

#: Lengths when neither a profile nor a length is given.
DEFAULT_PROMPT_LEN, DEFAULT_OUTPUT_LEN, DEFAULT_N_REQUESTS = 512, 128, 100


def _apply(func: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        func = option(func)
    return func


def request_options(func: F) -> F:
    """Where the requests come from: a generated stream or a CSV trace."""
    return _apply(func, [
        click.option("--requests", "n_requests", type=int, default=None,
                     help="Requests to generate (with --trace: the first N) "
                          f"[default: {DEFAULT_N_REQUESTS}]."),
        click.option("--rate", "rate_per_s", type=float, default=None,
                     help="Mean arrival rate in requests/s (Poisson; gamma with --cv). "
                          "0, inf or omitted: offline, every request at t = 0."),
        click.option("--cv", type=float, default=None,
                     help="Coefficient of variation of the gaps (bursty arrivals; 1 = Poisson)."),
        click.option("--prompt-len", type=int, default=None,
                     help=f"Prompt tokens per request [default: {DEFAULT_PROMPT_LEN}, or the profile's]."),
        click.option("--output-len", type=int, default=None,
                     help=f"Output tokens per request [default: {DEFAULT_OUTPUT_LEN}, or the profile's]."),
        click.option("--profile", type=click.Choice(sorted(PROFILES)), default=None,
                     help="Draw lengths from a measured trace's distribution (docs/serving_profiles.md); "
                          "--prompt-len/--output-len override one side."),
        click.option("--trace", "trace_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="CSV of requests: arrival_s,prompt_len,output_len[,prefix_id]."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of arrivals and lengths."),
    ])


def deployment_options(func: F) -> F:
    """What serves: the architecture, the model and each replica's plan."""
    return _apply(func, [
        click.option("--arch", default="h100-sxm", show_default=True,
                     help="Chip or system preset (`hwsim list archs|systems`) or a YAML path."),
        click.option("--model", default="llama2-7b", show_default=True,
                     help="Model preset (`hwsim list models`) or a HF config.json/YAML path."),
        click.option("--n-layers", type=int, default=None,
                     help="Serve this many layers instead of the model's."),
        click.option("--dtype", default="bf16", show_default=True, help="Weights, activations and KV dtype."),
        *precision_options(),
        click.option("--tp", type=click.IntRange(min=1), default=None,
                     help="Tensor-parallel chips per replica."),
        click.option("--pp", type=click.IntRange(min=1), default=None, help="Pipeline stages per replica."),
        click.option("--dp", type=click.IntRange(min=1), default=None, help="Replicas (data parallel)."),
    ])


def scheduler_options(func: F) -> F:
    """The serving engine's options (defaults: vLLM's; see docs/serving.md)."""
    return _apply(func, [
        click.option("--scheduler", default="vllm", show_default=True, help=f"One of {', '.join(POLICIES)}."),
        click.option("--max-num-seqs", type=int, default=None,
                     help="Requests per iteration at most [default: 256]."),
        click.option("--max-num-batched-tokens", type=int, default=None,
                     help="New tokens per iteration at most (sarathi: the chunk budget) "
                          "[default: 8192; sarathi 2048]."),
        click.option("--block-tokens", type=int, default=None, help="Tokens per KV block [default: 16]."),
        click.option("--memory-fraction", type=float, default=None,
                     help="Share of chip memory for weights, activations and KV [default: 0.9]."),
        click.option("--preemption", default=None, help="recompute or swap [default: recompute]."),
        click.option("--priority", default=None, help="prefill or decode first [default: the scheduler's]."),
        click.option("--prefix-caching", is_flag=True, default=None,
                     help="Share KV blocks of prompts with the same prefix_id (traces)."),
        click.option("--router", default=None,
                     help="round_robin, least_outstanding or least_kv [default: round_robin]."),
        click.option("--usd-per-chip-hour", type=float, default=None,
                     help="Price of a chip-hour: adds the cost per million tokens."),
    ])


def slo_options(func: F) -> F:
    """Latency limits for goodput and the run-level test."""
    return _apply(func, [
        click.option("--slo-ttft-ms", type=float, default=None, help="TTFT limit (ms)."),
        click.option("--slo-tpot-ms", type=float, default=None, help="TPOT limit (ms)."),
        click.option("--slo-e2e-ms", type=float, default=None, help="End-to-end latency limit (ms)."),
        click.option("--slo-percentile", type=float, default=99.0, show_default=True,
                     help="Percentile that must meet each limit for the run to pass."),
    ])


_GENERATED = ("rate_per_s", "cv", "prompt_len", "output_len", "profile")


def build_requests(opts: dict[str, Any]) -> Requests:
    """The requests the options describe (a trace, or a generated stream)."""
    n, rate, cv = opts.get("n_requests"), opts.get("rate_per_s"), opts.get("cv")
    if opts.get("trace_csv") is not None:
        clash = [f"--{k.removesuffix('_per_s').replace('_', '-')}" for k in _GENERATED
                 if opts.get(k) is not None]
        if clash:
            raise ConfigError([f"--trace: the trace gives arrivals and lengths; drop {', '.join(clash)}"])
        requests = Requests.from_csv(opts["trace_csv"])
        return requests.head(n) if n is not None else requests
    offline = rate is None or rate == 0 or rate == math.inf
    if rate is not None and not offline and not (math.isfinite(rate) and rate > 0):
        raise ConfigError([f"--rate: must be a number of requests/s > 0 (0 or inf: offline), got {rate:g}"])
    if cv is not None and offline:
        raise ConfigError(["--cv: bursty arrivals need a --rate > 0"])
    profile = PROFILES[opts["profile"]] if opts.get("profile") else None
    lengths = {"prompt_len": profile.prompt_len if profile else DEFAULT_PROMPT_LEN,
               "output_len": profile.output_len if profile else DEFAULT_OUTPUT_LEN}
    lengths |= {k: opts[k] for k in lengths if opts.get(k) is not None}
    prompt, output = lengths["prompt_len"], lengths["output_len"]
    n = DEFAULT_N_REQUESTS if n is None else n
    seed = opts.get("seed", 0)
    if offline:
        return Requests.offline(n, prompt, output, seed)
    assert rate is not None
    if cv is not None:
        return Requests.bursty(n, rate, cv, prompt, output, seed)
    return Requests.poisson(n, rate, prompt, output, seed)


_OPTION_KEYS = ("max_num_seqs", "max_num_batched_tokens", "block_tokens", "memory_fraction", "preemption",
                "priority", "prefix_caching", "router", "usd_per_chip_hour", "n_layers")


def serve_arguments(opts: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`hwsim.serve` (all but the requests) from the options;
    options left out keep the engine's defaults."""
    given = {k: opts[k] for k in ("tp", "pp", "dp") if opts.get(k) is not None}
    try:
        plan = Plan(**given) if given else None
    except ValidationError as exc:
        raise ConfigError(validation_problems("plan", exc)) from None
    options = {k: opts[k] for k in _OPTION_KEYS if opts.get(k) is not None}
    prec = {k: opts[k] for k in ("precision", "weight_dtype", "kv_dtype") if opts.get(k) is not None}
    return {"arch": opts["arch"], "model": opts["model"], "plan": plan, "dtype": opts["dtype"],
            "scheduler": opts["scheduler"], "slo": slo_from_options(opts), **prec, **options}


class ProgressBar:
    """A progress callback for :func:`hwsim.serve`: counts completed requests and, once
    the run has lasted ``delay_s`` and only if ``file`` is a terminal, draws a bar
    (redrawn at most every ``redraw_s``)."""

    def __init__(self, total: int, file: TextIO | None = None, delay_s: float = 1.0,
                 redraw_s: float = 0.1) -> None:
        self.total, self.file, self.delay_s, self.redraw_s = total, file or sys.stderr, delay_s, redraw_s
        self.done = self._drawn = 0
        self._start = self._last = time.monotonic()
        self._bar: Any = None
        self.enabled = bool(getattr(self.file, "isatty", lambda: False)())

    def __call__(self, n_finished: int) -> None:
        self.done += n_finished
        if not self.enabled:
            return
        now = time.monotonic()
        if self._bar is None and now - self._start >= self.delay_s:
            self._bar = click.progressbar(length=self.total, label="serving", file=self.file, show_pos=True,
                                          item_show_func=lambda _: "requests")
            self._bar.__enter__()
        if self._bar is not None and (now - self._last >= self.redraw_s or self.done >= self.total):
            self._bar.update(self.done - self._drawn)
            self._drawn, self._last = self.done, now

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, exc, tb)
            self.file.write("\n")  # keep the finished bar; what follows starts on a new line


def _title(result: ServeResult, requests: Requests) -> str:
    rate = requests.mean_rate_per_s
    arrivals = "offline" if math.isnan(rate) else f"{rate:.4g} req/s measured"
    plan = result.config.get("plan", "")
    chips = f"{result.n_chips} chip" + ("s" if result.n_chips != 1 else "")
    return (f"{result.model} on {result.arch} ({chips}, {plan}, {result.scheduler}): "
            f"{len(requests)} requests from {requests.source}, {arrivals}")


@main.command("serve")
@deployment_options
@request_options
@scheduler_options
@slo_options
@decoding_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write requests.parquet, iterations.parquet and summary.json here.")
@click.option("--csv", "as_csv", is_flag=True, help="With -o: CSV frames instead of Parquet.")
@click.option("--trace-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a Perfetto trace (.json): a track per replica, a slice per iteration.")
@click.option("--find-capacity", is_flag=True,
              help="Search the highest Poisson rate that meets the --slo-* limits (--requests per run); "
                   "with --rate R, the fewest replicas (at most --dp) that serve R within them.")
def serve_cmd(as_json: bool, output_dir: Path | None, as_csv: bool, trace_out: Path | None,
              find_capacity: bool, **opts: Any) -> None:
    """Serve a stream of requests: continuous batching under a paged KV cache, iteration
    by iteration, on one or more replicas; print latency percentiles, throughput and energy.

    \b
    Examples:
      hwsim serve --arch h100-sxm --model llama2-7b --requests 200 --rate 5
      hwsim serve --arch dgx-h100 --model llama2-70b --tp 8 --profile chat --rate 2 --slo-ttft-ms 2000
      hwsim serve --trace requests.csv --scheduler sarathi --json -o runs/sarathi
      hwsim serve --arch h100-sxm --model llama2-7b --requests 300 --find-capacity --slo-ttft-ms 500
    """
    from hwsim.serve_trace import write_serve_trace
    from hwsim.trace import check_trace_path

    if find_capacity:
        if output_dir is not None or trace_out is not None or as_csv:
            raise ConfigError(["--find-capacity: prints the search; -o, --csv and --trace-out are "
                               "for one run"])
        decoding = pop_decoding(opts)
        run_find_capacity(opts, serve_arguments(opts) | decoding, as_json)
        return
    if trace_out is not None:
        check_trace_path(trace_out)
    decoding = pop_decoding(opts)
    requests = build_requests(opts)
    arguments = serve_arguments(opts) | decoding
    with ProgressBar(len(requests)) as progress:
        result = serve(requests, **arguments, progress=progress)
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)
    written = write_run(result, output_dir, as_csv) if output_dir is not None else []
    if trace_out is not None:
        written.append(write_serve_trace(result, trace_out))
    if as_json:
        click.echo(result.to_json())
    else:
        click.echo(_title(result, requests))
        click.echo(report.format_serve_summary(result))
    for path in written:
        click.echo(f"wrote {path}", err=as_json)


# --find-capacity: the highest Poisson rate within the SLO, or with --rate the fewest replicas.

def capacity_arguments(opts: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`hwsim.find_capacity` from the parsed options and the
    :func:`~hwsim.cli.serve.serve_arguments` they gave."""
    clash = [flag for flag, key in (("--cv", "cv"), ("--trace", "trace_csv")) if opts.get(key) is not None]
    if clash:
        raise ConfigError([f"--find-capacity: the search serves Poisson arrivals of generated lengths; "
                           f"drop {', '.join(clash)}"])
    if arguments.get("slo") is None:
        raise ConfigError(["--find-capacity: give at least one limit (--slo-ttft-ms, --slo-tpot-ms or "
                           "--slo-e2e-ms)"])
    profile = PROFILES[opts["profile"]] if opts.get("profile") else None
    prompt = opts.get("prompt_len") or (profile.prompt_len if profile else DEFAULT_PROMPT_LEN)
    output = opts.get("output_len") or (profile.output_len if profile else DEFAULT_OUTPUT_LEN)
    n = opts.get("n_requests") or DEFAULT_N_REQUESTS
    return {**arguments, "n_requests": n, "prompt_len": prompt, "output_len": output,
            "seed": opts.get("seed", 0)}


def _rate(value: float) -> str:
    return "offline" if math.isinf(value) else f"{value:.4g}"


def format_capacity(result: CapacityResult) -> str:
    """The answer and every evaluated point, as text."""
    lines = ["rate_req_s  meets_slo  ttft_p99_ms  tpot_p99_ms  out_tok_s"]
    for p in result.points:
        m = p.metrics
        lines.append(f"{_rate(p.rate_per_s):>10}  {'yes' if p.meets_slo else 'no':>9}  "
                     f"{m['ttft_p99_s'] * 1e3:11.4g}  {m['tpot_p99_s'] * 1e3:11.4g}  "
                     f"{m['output_tokens_per_s']:9.4g}")
    s = result.summary()
    if result.rate_per_s > 0:
        bound = " (the throughput bound: the SLO does not bind)" if result.is_throughput_bound else (
            f" (missed at {_rate(result.upper_rate_per_s)})")
        head = (f"capacity: {s['capacity_requests_per_s']:.4g} requests/s{bound}, "
                f"{s['capacity_requests_per_s_per_chip']:.4g} per chip on {s['n_chips']} chips, "
                f"{s['output_tokens_per_s']:.4g} output tokens/s")
    else:
        head = f"capacity: no rate meets the SLO (lowest tried {_rate(result.upper_rate_per_s)} requests/s)"
    return "\n".join([head, *lines])


def format_replicas(result: ReplicaResult) -> str:
    """The fewest replicas and every evaluated count, as text."""
    lines = ["replicas  meets_slo  ttft_p99_ms  tpot_p99_ms  out_tok_s"]
    for p in result.points:
        m = p.metrics
        lines.append(f"{p.replicas:8d}  {'yes' if p.meets_slo else 'no':>9}  {m['ttft_p99_s'] * 1e3:11.4g}  "
                     f"{m['tpot_p99_s'] * 1e3:11.4g}  {m['output_tokens_per_s']:9.4g}")
    if result.replicas is None:
        head = f"replicas: even {result.max_replicas} miss the SLO at {result.rate_per_s:.4g} requests/s"
    else:
        head = f"replicas: {result.replicas} serve {result.rate_per_s:.4g} requests/s within the SLO"
    return "\n".join([head, *lines])


def run_find_capacity(opts: dict[str, Any], arguments: dict[str, Any], as_json: bool) -> None:
    """Search, then print the answer (a table, or JSON with ``--json``)."""
    kwargs = capacity_arguments(opts, arguments)
    rate = opts.get("rate_per_s")
    if rate is not None:
        plan = kwargs.get("plan")
        if plan is not None and plan.dp > 1:
            kwargs["max_replicas"] = plan.dp
            kwargs["plan"] = plan.model_copy(update={"dp": 1})
        replicas = find_replicas(**kwargs, rate_per_s=rate)
        if as_json:
            summary = {"replicas": replicas.replicas, "rate_per_s": replicas.rate_per_s,
                       "max_replicas": replicas.max_replicas}
            points = _finite(replicas.to_frame().to_dict("records"))
            click.echo(json.dumps({"summary": summary, "points": points}))
        else:
            click.echo(format_replicas(replicas))
        return
    result = find_capacity_api(**kwargs)
    if as_json:
        points = result.to_frame().to_dict("records")
        click.echo(json.dumps({"summary": _finite(result.summary()), "points": _finite(points)}))
    else:
        click.echo(format_capacity(result))


def _finite(value: Any) -> Any:
    """JSON has no infinity or NaN: they become null (the offline point's rate, an
    unmissed upper rate, a metric a run does not have)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
