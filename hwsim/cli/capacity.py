"""``hwsim serve --find-capacity``: the highest Poisson rate that meets the ``--slo-*``
limits (:func:`hwsim.find_capacity`), or with ``--rate R`` the fewest replicas that
serve ``R`` requests/s within them (:func:`hwsim.find_replicas`; ``--dp`` caps the
count), with the options of ``hwsim serve``."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from hwsim.api import find_capacity, find_replicas
from hwsim.cli.serve import DEFAULT_N_REQUESTS, DEFAULT_OUTPUT_LEN, DEFAULT_PROMPT_LEN
from hwsim.engine.serve.capacity import CapacityResult, ReplicaResult
from hwsim.engine.serve.profiles import PROFILES
from hwsim.errors import ConfigError


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
    result = find_capacity(**kwargs)
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
