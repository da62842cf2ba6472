"""Options shared by the commands that describe a workload, a plan or JSON output."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click
import yaml
from pydantic import ValidationError

from hwsim._yaml import validation_problems
from hwsim.api import load_workload
from hwsim.engine.serve.metrics import SLO
from hwsim.errors import ConfigError
from hwsim.workload.approx_algorithms import parse_algorithm
from hwsim.workload.decoding import DECODING_KINDS, KV_POLICY_KINDS
from hwsim.workload.dlrm import resolve_dlrm
from hwsim.workload.dlrm_lower import DLRM_PHASES, SHARDINGS
from hwsim.workload.lower import PHASES, lower
from hwsim.workload.ops import parse_sparsity
from hwsim.workload.plan import Plan

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_COMPARE_ARCHS = ("h100-sxm", "tpu-v4", "wse2")
#: ``--phase`` choices: the transformer phases, then the recommendation-model ones not among them.
ALL_PHASES = (*PHASES, *(p for p in DLRM_PHASES if p not in PHASES))
_LOWER_DEFAULTS = {k: p.default for k, p in inspect.signature(lower).parameters.items()}


def _dflt(key: str) -> str:
    """`` [default: N]`` from :func:`hwsim.workload.lower`, so help never drifts from it."""
    return f" [default: {_LOWER_DEFAULTS[key]}]"


def parse_attention_approx(ctx: click.Context, param: click.Parameter,
                           value: str | None) -> dict[str, Any] | None:
    """Click callback: ``kind:name=value,...`` as the mapping ``attention_approx`` takes
    (checked by :func:`hwsim.workload.approx_algorithms.parse_algorithm`), or None."""
    if value is None:
        return None
    kind, _, rest = value.strip().partition(":")
    out: dict[str, Any] = {"kind": kind.strip().lower()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        name, eq, number = item.partition("=")
        if not eq or not number.strip().lstrip("-").isdigit():
            raise click.BadParameter(f"expected name=integer, got {item!r} in {value!r}")
        out[name.strip()] = int(number)
    try:
        parse_algorithm(out, "--attention-approx")
    except ConfigError as exc:
        raise click.BadParameter("; ".join(exc.problems)) from None
    return out


def check_sparsity(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: ``value`` as a canonical ``N:M`` pattern (0 < N < M), a density
    pattern (``unstructured:0.3``, ``block4x4:0.5``), or None."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+):(\d+)", value.strip())
    if match:
        if not 0 < int(match[1]) < int(match[2]):
            raise click.BadParameter(f"expected an N:M pattern with 0 < N < M such as 2:4, got {value!r}")
        return f"{int(match[1])}:{int(match[2])}"
    try:
        parse_sparsity(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value.strip().lower()


def workload_options(func: F) -> F:
    """The options that describe a model workload (shared by simulate and compare)."""
    options = [
        click.option("--model", default="llama2-7b", show_default=True,
                     help="Model preset (see `hwsim list models`, `hwsim list recsys`) or a HF "
                          "config.json/YAML path."),
        click.option("--phase", type=click.Choice(ALL_PHASES), default=None,
                     help="prefill: prompts; decode: one step; request: prefill + decode steps; "
                          "train: one optimizer step; inference: a recommendation model's forward step "
                          "[default: decode; inference for a recsys model]."),
        click.option("--batch", type=int, default=1, show_default=True, help="Sequences processed together."),
        click.option("--context-len", type=int, help="Decode: KV-cache tokens." + _dflt("context_len")),
        click.option("--prompt-len", type=int, help="Prefill/request: prompt tokens." + _dflt("prompt_len")),
        click.option("--new-tokens", type=int, help="Request: decode steps." + _dflt("new_tokens")),
        click.option("--seq-len", type=int, help="Train: tokens per sequence." + _dflt("seq_len")),
        click.option("--n-layers", type=int, help="Simulate this many layers instead of the model's."),
        click.option("--dtype", help="Weights/activations dtype, e.g. bf16, fp8, int8." + _dflt("dtype")),
        *precision_options(),
        click.option("--attention", "attention_impl", type=click.Choice(["flash", "naive"]),
                     help="Attention kernel." + _dflt("attention_impl")),
        click.option("--sparsity", callback=check_sparsity,
                     help="Pattern the weight GEMMs are pruned to: N:M (2:4), unstructured:<density> "
                          "or block<R>x<C>:<density>."),
        click.option("--attention-window", type=int,
                     help="Every layer attends to at most this many recent keys (sliding window)."),
        click.option("--attention-density", type=float,
                     help="Block-sparse attention: share of key blocks each query block computes."),
        *recsys_options(),
        click.option("--attention-approx", callback=parse_attention_approx,
                     help="Approximate attention algorithm: topk:k=64, linformer:rank=256, "
                          "performer:features=256 or reformer:buckets=64,rounds=2."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_WORKLOAD_KEYS = ("batch", "context_len", "prompt_len", "new_tokens", "seq_len", "n_layers",
                  "dtype", "attention_impl", "sparsity", "precision", "weight_dtype", "kv_dtype",
                  "attention_window", "attention_density", "attention_approx", "decoding", "kv_policy",
                  "n_chips", "sharding", "embedding_dtype")


def recsys_options() -> list[Callable[[F], F]]:
    """``--n-chips``, ``--sharding``, ``--embedding-dtype``: a recommendation model's
    (``kind: dlrm``, docs/embeddings.md) load options."""
    return [
        click.option("--n-chips", type=click.IntRange(min=1), default=None,
                     help="Recsys model: chips the tables are sharded over and the MLPs data parallel on "
                          "(e.g. 8 with --arch dgx-h100) [default: 1]."),
        click.option("--sharding", type=click.Choice(SHARDINGS), default=None,
                     help="Recsys model: how the embedding tables are split over --n-chips "
                          "[default: table]."),
        click.option("--embedding-dtype",
                     help="Recsys model: every embedding table's dtype (fp16, int8, ...)."),
    ]


def resolve_phase(model: str, phase: str | None) -> str:
    """``phase``, or the default one for ``model`` (``inference`` for a recsys model, else ``decode``)."""
    if phase is not None:
        return phase
    return "inference" if resolve_dlrm(model) is not None else "decode"


def precision_options() -> list[Callable[[F], F]]:
    """``--precision``, ``--weight-dtype``, ``--kv-dtype`` (see docs/precision.md)."""
    return [
        click.option("--precision", callback=parse_precision,
                     help="Per-tensor precision: a scheme (w4a16, w8a16, w8a8, fp8, fp8-kv, nvfp4, "
                          "mxfp4...) or fields, e.g. 'scheme=w4a16,kv_cache=fp8,group_size=64,"
                          "layers=0:bf16;31:bf16'."),
        click.option("--weight-dtype", help="Layer weights' dtype (e.g. int4 for weight-only)."),
        click.option("--kv-dtype", help="KV cache dtype (e.g. fp8)."),
    ]


def parse_precision(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A scheme name as it is; ``key=value,...`` as a mapping (``layers=i:dtype;...``,
    integers and true/false converted)."""
    if value is None or "=" not in value:
        return value
    out: dict[str, Any] = {}
    for item in value.split(","):
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}")
        if key == "layers":
            try:
                out[key] = {int(i): d for i, _, d in (p.partition(":") for p in raw.split(";") if p)}
            except ValueError:
                raise click.BadParameter(f"layers: expected index:dtype;..., got {raw!r}") from None
        elif raw.isdigit():
            out[key] = int(raw)
        elif raw.lower() in ("true", "false"):
            out[key] = raw.lower() == "true"
        else:
            out[key] = raw
    return out


def build_workload(model: str, phase: str | None, opts: dict[str, Any]) -> Any:
    """The workload the options describe (``phase`` None: :func:`resolve_phase`'s default)."""
    overrides = {k: opts[k] for k in _WORKLOAD_KEYS if opts.get(k) is not None}
    return load_workload(model, phase=resolve_phase(model, phase), **overrides)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def strict_option(func: F) -> F:
    """``--strict``: a result with warnings (something simplified or assumed) is refused."""
    return click.option("--strict", is_flag=True,
                        help="Refuse (exit 2) a result that carries warnings instead of printing them.")(func)


def plan_options(func: F) -> F:
    for name, text in (("pp", "Pipeline-parallel stages."), ("dp", "Data-parallel replicas."),
                       ("ep", "Expert-parallel group (MoE)."), ("microbatches", "Micro-batches."),
                       ("tp", "Tensor-parallel group size.")):
        func = click.option(f"--{name}", type=click.IntRange(min=1), default=None, help=text)(func)
    func = click.option("--sequence-parallel", is_flag=True, help="Megatron sequence parallelism.")(func)
    func = click.option("--recompute-granularity", type=click.Choice(["full", "selective"]), default=None,
                        help="With --recompute: whole layers, or the attention core only (Megatron).")(func)
    func = click.option("--recompute-every", type=click.IntRange(min=1), default=None,
                        help="Full recompute: keep every n-th layer's input (checkpoint spacing).")(func)
    func = click.option("--place", "placement", multiple=True, metavar="ITEM=TIER:SHARE[,TIER:SHARE]",
                        help="Placement shares per tier, e.g. weights=hbm:0.7,host:0.3.")(func)
    return click.option("--zero", "zero_stage", type=click.IntRange(0, 3), default=None,
                        help="ZeRO stage.")(click.option("--recompute", is_flag=True,
                                                         help="Activation checkpointing.")(func))


def plan_from_options(opts: dict[str, Any]) -> Plan | None:
    """Take the plan options out of ``opts``; None when none was given."""
    values = {k: opts.pop(k) for k in ("tp", "pp", "dp", "ep", "microbatches", "zero_stage",
                                       "sequence_parallel", "recompute", "recompute_granularity",
                                       "recompute_every")}
    given = {k: v for k, v in values.items() if v not in (None, False)}
    placement = _placement(opts.pop("placement", ()) or ())
    if placement:
        given["placement"] = placement
    if not given:
        return None
    try:
        return Plan(**given)
    except ValidationError as exc:
        raise ConfigError(validation_problems("plan", exc)) from None


def _placement(pairs: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``("weights=hbm:0.7,host:0.3", ...)`` as a placement mapping."""
    out: dict[str, dict[str, float]] = {}
    for text in pairs:
        item, _, rest = text.partition("=")
        try:
            shares = (part.split(":") for part in rest.split(","))
            out[item.strip()] = {t.strip(): float(v) for t, v in shares}
        except ValueError:
            raise ConfigError([f"--place: {text!r}: expected ITEM=TIER:SHARE[,TIER:SHARE...], "
                               "e.g. weights=hbm:0.7,host:0.3"]) from None
    return out


# Decoding strategies and KV policies (hwsim/workload/decoding.py): ``--decoding KIND``
# with repeated ``--decoding-param KEY=VALUE`` (YAML scalars), ``--kv-policy`` and ``--kv-param``.
def decoding_options(func: F) -> F:
    """Add the four decoding flags to a command."""
    options = [
        click.option("--decoding", "decoding_kind", type=click.Choice(DECODING_KINDS), default=None,
                     help="Token-generation strategy [default: greedy]."),
        click.option("--decoding-param", "decoding_params", multiple=True, metavar="KEY=VALUE",
                     help="A field of the strategy, e.g. k=4, acceptance_rate=0.8, draft=MODEL, n_beams=4."),
        click.option("--kv-policy", "kv_policy_kind", type=click.Choice(KV_POLICY_KINDS), default=None,
                     help="KV-cache policy [default: full]."),
        click.option("--kv-param", "kv_params", multiple=True, metavar="KEY=VALUE",
                     help="A field of the KV policy, e.g. window_tokens=2044, compression_ratio=0.5."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def parse_params(flag: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("k=4", "acceptance_rate=0.8", ...)`` as a mapping of YAML scalars (lists as tuples).

    Raises
    ------
    ConfigError
        Naming ``flag``, for an item that is not ``KEY=VALUE`` or a value YAML cannot read.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"{flag}: expected KEY=VALUE, got {pair!r}"])
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise ConfigError([f"{flag}: {key.strip()}: cannot read {value!r} (a number, word or "
                               "[list])"]) from None
        if isinstance(parsed, list):
            parsed = tuple(parsed)
        out[key.strip()] = parsed
    return out


def pop_decoding(opts: dict[str, Any]) -> dict[str, Any]:
    """Remove the decoding flags from ``opts``; return ``decoding=`` / ``kv_policy=``
    keyword arguments (empty when none was given)."""
    out: dict[str, Any] = {}
    flags = (("decoding_kind", "decoding_params", "decoding", "--decoding-param"),
             ("kv_policy_kind", "kv_params", "kv_policy", "--kv-param"))
    for kind_key, params_key, name, flag in flags:
        kind, params = opts.pop(kind_key, None), opts.pop(params_key, ())
        if kind is None and params:
            raise ConfigError([f"{flag}: give the kind too (--{name.replace('_', '-')} KIND)"])
        if kind is not None:
            out[name] = {"kind": kind, **parse_params(flag, params)}
    return out


def slo_from_options(opts: dict[str, Any]) -> SLO | None:
    """The SLO of the ``--slo-*`` options (ms to s), or None when no limit is given."""
    limits = {k: opts.get(f"slo_{k}_ms") for k in ("ttft", "tpot", "e2e")}
    if all(v is None for v in limits.values()):
        return None
    bad = [f"--slo-{k}-ms: must be a number of milliseconds > 0, got {v:g}" for k, v in limits.items()
           if v is not None and not (math.isfinite(v) and v > 0)]
    if bad:
        raise ConfigError(bad)
    percentile = opts.get("slo_percentile")
    return SLO(**{f"{k}_s": v / 1e3 if v is not None else None for k, v in limits.items()},
               percentile=99.0 if percentile is None else percentile)
