"""The ``hwsim`` command line: simulate, single ops, list presets, compare architectures.

Every problem a user can cause (an unknown preset, a malformed file, a model that does
not fit) is an :class:`~hwsim.errors.HwsimError`; it is printed as ``error: <line>`` on
stderr and the command exits with status 2, without a traceback.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from hwsim import ops, report
from hwsim._yaml import validation_problems
from hwsim.api import load_workload, simulate
from hwsim.arch.load import list_archs, load_arch
from hwsim.arch.model import Chip
from hwsim.arch.system import list_systems, load_system
from hwsim.cli.sweep import sweep_cmd
from hwsim.cli.validate import validate
from hwsim.errors import ConfigError, HwsimError
from hwsim.planner import rank_plans
from hwsim.result import Result
from hwsim.workload.lower import PHASES, lower
from hwsim.workload.ops import PUBLIC_ELEMENTWISE
from hwsim.workload.plan import Plan
from hwsim.workload.spec import ModelSpec, list_models, load_model_spec

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 2
DEFAULT_COMPARE_ARCHS = ("h100-sxm", "tpu-v4", "wse2")
_LOWER_DEFAULTS = {k: p.default for k, p in inspect.signature(lower).parameters.items()}


def _dflt(key: str) -> str:
    """`` [default: N]`` from :func:`hwsim.workload.lower`, so help never drifts from it."""
    return f" [default: {_LOWER_DEFAULTS[key]}]"


def _error_lines(exc: HwsimError) -> list[str]:
    lines = getattr(exc, "problems", None) or str(exc).splitlines() or [type(exc).__name__]
    return [str(line) for line in lines]


def _fail(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"error: {line}", err=True)
    raise click.exceptions.Exit(EXIT_ERROR)


class _Group(click.Group):
    """A group that turns :class:`HwsimError` into ``error:`` lines and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HwsimError as exc:
            _fail(_error_lines(exc))


def _check_sparsity(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+):(\d+)", value.strip())
    if not match or not 0 < int(match[1]) < int(match[2]):
        raise click.BadParameter(f"expected an N:M pattern with 0 < N < M such as 2:4, got {value!r}")
    return f"{int(match[1])}:{int(match[2])}"


def _workload_options(func: F) -> F:
    """The options that describe a model workload (shared by simulate and compare)."""
    options = [
        click.option("--model", default="llama2-7b", show_default=True,
                     help="Model preset (see `hwsim list models`) or a HF config.json/YAML path."),
        click.option("--phase", type=click.Choice(PHASES), default="decode", show_default=True,
                     help="prefill: prompts; decode: one step; request: prefill + decode steps; "
                          "train: one optimizer step."),
        click.option("--batch", type=int, default=1, show_default=True, help="Sequences processed together."),
        click.option("--context-len", type=int, help="Decode: KV-cache tokens." + _dflt("context_len")),
        click.option("--prompt-len", type=int, help="Prefill/request: prompt tokens." + _dflt("prompt_len")),
        click.option("--new-tokens", type=int, help="Request: decode steps." + _dflt("new_tokens")),
        click.option("--seq-len", type=int, help="Train: tokens per sequence." + _dflt("seq_len")),
        click.option("--n-layers", type=int, help="Simulate this many layers instead of the model's."),
        click.option("--dtype", help="Weights/activations dtype, e.g. bf16, fp8, int8." + _dflt("dtype")),
        click.option("--attention", "attention_impl", type=click.Choice(["flash", "naive"]),
                     help="Attention kernel." + _dflt("attention_impl")),
        click.option("--sparsity", callback=_check_sparsity,
                     help="N:M pattern the weight GEMMs are pruned to, e.g. 2:4."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_WORKLOAD_KEYS = ("batch", "context_len", "prompt_len", "new_tokens", "seq_len", "n_layers",
                  "dtype", "attention_impl", "sparsity")


def _build_workload(model: str, phase: str, opts: dict[str, Any]) -> Any:
    overrides = {k: opts[k] for k in _WORKLOAD_KEYS if opts.get(k) is not None}
    return load_workload(model, phase=phase, **overrides)


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hwsim", prog_name="hwsim")
def main() -> None:
    """Simulate transformer workloads on accelerator architectures.

    \b
    Examples:
      hwsim compare
      hwsim simulate --arch h100-sxm --model llama2-7b --phase decode --batch 8
      hwsim simulate --arch dgx-h100 --model llama2-70b --phase decode --batch 64 --tp 8
      hwsim op gemm --arch tpu-v4 --m 2048 --k 4096 --n 4096
      hwsim list archs
    """


def _plan_options(func: F) -> F:
    for name, text in (("pp", "Pipeline-parallel stages."), ("dp", "Data-parallel replicas."),
                       ("ep", "Expert-parallel group (MoE)."), ("microbatches", "Micro-batches."),
                       ("tp", "Tensor-parallel group size.")):
        func = click.option(f"--{name}", type=click.IntRange(min=1), default=None, help=text)(func)
    func = click.option("--sequence-parallel", is_flag=True, help="Megatron sequence parallelism.")(func)
    return click.option("--zero", "zero_stage", type=click.IntRange(0, 3), default=None,
                        help="ZeRO stage.")(click.option("--recompute", is_flag=True,
                                                         help="Activation checkpointing.")(func))


def _plan(opts: dict[str, Any]) -> Plan | None:
    """Take the plan options out of ``opts``; None when none was given."""
    values = {k: opts.pop(k) for k in ("tp", "pp", "dp", "ep", "microbatches", "zero_stage",
                                       "sequence_parallel", "recompute")}
    given = {k: v for k, v in values.items() if v not in (None, False)}
    if not given:
        return None
    try:
        return Plan(**given)
    except ValidationError as exc:
        raise ConfigError(validation_problems("plan", exc)) from None


@main.command("simulate")
@click.option("--arch", default="h100-sxm", show_default=True,
              help="Architecture or system preset (see `hwsim list archs`, `hwsim list systems`) "
                   "or a YAML path.")
@_workload_options
@_plan_options
@click.option("--ops", "show_ops", is_flag=True, help="Also show time per op (summed over layers).")
@_json_option
def simulate_cmd(arch: str, model: str, phase: str, show_ops: bool, as_json: bool, **opts: Any) -> None:
    """Simulate one model workload on one architecture (or a system, split by a
    parallelism plan: --tp, --pp, --dp, ...) and print its totals."""
    plan = _plan(opts)
    workload = _build_workload(model, phase, opts)
    result = simulate(workload, arch, plan=plan)
    if as_json:
        click.echo(result.to_json(include_ops=show_ops))
        return
    click.echo(report.format_summary(result))
    if show_ops:
        click.echo("")
        click.echo(report.format_ops(result))


@main.command("compare")
@click.option("--arch", "archs", multiple=True, metavar="ARCH",
              help="Architecture preset or YAML path; repeat for each "
                   f"[default: {', '.join(DEFAULT_COMPARE_ARCHS)}].")
@_workload_options
@click.option("--offload", is_flag=True, help="Systems: also try plans that offload to host memory.")
@_json_option
def compare_cmd(archs: tuple[str, ...], model: str, phase: str, offload: bool, as_json: bool,
                **opts: Any) -> None:
    """Simulate one workload on several architectures, one row each.

    A multi-chip system (`hwsim list systems`) runs the workload with its best plan,
    found as `hwsim plan` finds it. An architecture that cannot run the workload (it
    does not fit, a dtype is not supported, its file is invalid) gets a row saying why;
    the exit status is 2 only if none could run it.
    """
    workload = _build_workload(model, phase, opts)
    outcomes: list[tuple[str, Result | str]] = []
    for name in archs or DEFAULT_COMPARE_ARCHS:
        try:
            outcomes.append(_compare_one(workload, name, offload))
        except HwsimError as exc:
            outcomes.append((name, "; ".join(_error_lines(exc))))
    if as_json:
        data = [json.loads(r.to_json()) if isinstance(r, Result) else {"arch": a, "error": r}
                for a, r in outcomes]
        click.echo(json.dumps(data, indent=2))
    else:
        title = f"{workload.name} {phase} ({', '.join(f'{k}={v}' for k, v in workload.params.items())})"
        click.echo(title)
        click.echo(report.format_compare(outcomes, request=phase == "request"))
    if not any(isinstance(r, Result) for _, r in outcomes):
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


@main.command("list")
@click.argument("what", type=click.Choice(["archs", "systems", "models"]))
@_json_option
def list_cmd(what: str, as_json: bool) -> None:
    """List the shipped architecture, system or model presets."""
    columns: Any
    rows: Any
    if what == "systems":
        columns, rows = ("name", "chip", "n_chips", "fabrics"), []
        for name in list_systems():
            system = load_system(name)
            fabrics = " + ".join(f"{f.name} ({f.topology} {'x'.join(map(str, f.dims))})"
                                 for f in system.fabrics)
            rows.append((name, system.chip.name, system.n_chips, fabrics or "none"))
    elif what == "archs":
        chips: list[tuple[str, Chip | str]] = [(n, _try(load_arch, n)) for n in list_archs()]
        columns, rows = report.ARCH_COLUMNS, report.arch_rows(chips)
    else:
        specs: list[tuple[str, ModelSpec | str]] = [(n, _try(load_model_spec, n)) for n in list_models()]
        columns, rows = report.MODEL_COLUMNS, report.model_rows(specs)
    if as_json:
        click.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2))
    else:
        click.echo(report.format_table(columns, rows))


def _try(loader: Callable[[str], Any], name: str) -> Any:
    """The loaded preset, or the first line of why it failed (listed, not fatal)."""
    try:
        return loader(name)
    except HwsimError as exc:
        return _error_lines(exc)[0]


# Single operators ------------------------------------------------------------------------

@main.group("op", cls=_Group)
def op_group() -> None:
    """Simulate a single operator on an architecture."""


def _op_common(func: F) -> F:
    func = _json_option(func)
    func = click.option("--dtype", default="bf16", show_default=True, help="Operand dtype.")(func)
    return click.option("--arch", required=True,
                        help="Architecture preset (see `hwsim list archs`) or a YAML path.")(func)


def _show_op(workload: Any, arch: str, as_json: bool) -> None:
    result = simulate(workload, arch)
    if as_json:
        click.echo(result.to_json(include_ops=True))
    else:
        click.echo(report.format_single_op(result))


@op_group.command("gemm")
@_op_common
@click.option("--m", "m", type=int, required=True, help="Rows of the activation (tokens).")
@click.option("--k", "k", type=int, required=True, help="Reduction dimension.")
@click.option("--n", "n", type=int, required=True, help="Columns of the weight (outputs).")
@click.option("--sparsity", callback=_check_sparsity, help="N:M pattern of the weight, e.g. 2:4.")
def gemm_cmd(arch: str, dtype: str, as_json: bool, m: int, k: int, n: int, sparsity: str | None) -> None:
    """An (M x K) @ (K x N) product whose right operand is a weight."""
    _show_op(ops.gemm(m, k, n, dtype=dtype, sparsity=sparsity), arch, as_json)


@op_group.command("attention")
@_op_common
@click.option("--batch", type=int, default=1, show_default=True, help="Sequences.")
@click.option("--n-heads", type=int, required=True, help="Query heads.")
@click.option("--n-kv-heads", type=int,
              help="Key/value heads (fewer than --n-heads is GQA) [default: n-heads].")
@click.option("--q-len", type=int, required=True, help="Query tokens per sequence.")
@click.option("--kv-len", type=int, required=True, help="Key/value tokens per sequence.")
@click.option("--head-dim", type=int, default=128, show_default=True, help="Dimension per head.")
@click.option("--causal/--no-causal", default=True, show_default=True, help="Causal mask.")
@click.option("--impl", type=click.Choice(["flash", "naive"]), default="flash", show_default=True,
              help="Fused (flash) or materialised (naive) scores.")
def attention_cmd(arch: str, dtype: str, as_json: bool, batch: int, n_heads: int, n_kv_heads: int | None,
                  q_len: int, kv_len: int, head_dim: int, causal: bool, impl: str) -> None:
    """One attention kernel (scores, softmax, weighted sum)."""
    workload = ops.attention(batch, n_heads, n_kv_heads if n_kv_heads is not None else n_heads, q_len,
                             kv_len, head_dim, is_causal=causal, dtype=dtype, impl=impl)
    _show_op(workload, arch, as_json)


@op_group.command("elementwise")
@_op_common
@click.option("--kind", type=click.Choice(PUBLIC_ELEMENTWISE), required=True, help="Operator.")
@click.option("--rows", type=int, required=True, help="Rows (tokens).")
@click.option("--cols", type=int, required=True, help="Columns (hidden size).")
def elementwise_cmd(arch: str, dtype: str, as_json: bool, kind: str, rows: int, cols: int) -> None:
    """A memory-bound operator (norm, activation, softmax, add) over a rows x cols tensor."""
    _show_op(ops.elementwise(kind, (rows, cols), dtype=dtype), arch, as_json)


@op_group.command("embedding")
@_op_common
@click.option("--n-tokens", type=int, required=True, help="Rows gathered.")
@click.option("--vocab", type=int, required=True, help="Rows in the table.")
@click.option("--dim", type=int, required=True, help="Embedding dimension.")
def embedding_cmd(arch: str, dtype: str, as_json: bool, n_tokens: int, vocab: int, dim: int) -> None:
    """Gather token rows from an embedding table."""
    _show_op(ops.embedding(n_tokens, vocab, dim, dtype=dtype), arch, as_json)


main.add_command(validate)
main.add_command(sweep_cmd)

# Imported last: these command modules reuse the option helpers defined above
# (cli_plot registers `plot` and `trace` itself).
import hwsim.cli.plot  # noqa: E402, F401
from hwsim.cli.plan import plan_cmd  # noqa: E402

main.add_command(plan_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()
