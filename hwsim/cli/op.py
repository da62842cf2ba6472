"""``hwsim op gemm|attention|elementwise|embedding``: one operator on one architecture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from hwsim import ops, report
from hwsim.api import simulate
from hwsim.cli.group import ErrorGroup, echo_warnings, main
from hwsim.cli.options import check_sparsity, json_option
from hwsim.workload.ops import PUBLIC_ELEMENTWISE

F = TypeVar("F", bound=Callable[..., Any])


@main.group("op", cls=ErrorGroup)
def op_group() -> None:
    """Simulate a single operator on an architecture."""


def _op_common(func: F) -> F:
    func = json_option(func)
    func = click.option("--dtype", default="bf16", show_default=True, help="Operand dtype.")(func)
    return click.option("--arch", required=True,
                        help="Architecture preset (see `hwsim list archs`) or a YAML path.")(func)


def _show_op(workload: Any, arch: str, as_json: bool) -> None:
    result = simulate(workload, arch)
    if as_json:
        click.echo(result.to_json(include_ops=True))
    else:
        click.echo(report.format_single_op(result))
        echo_warnings(result.warnings)


@op_group.command("gemm")
@_op_common
@click.option("--m", "m", type=int, required=True, help="Rows of the activation (tokens).")
@click.option("--k", "k", type=int, required=True, help="Reduction dimension.")
@click.option("--n", "n", type=int, required=True, help="Columns of the weight (outputs).")
@click.option("--sparsity", callback=check_sparsity, help="N:M pattern of the weight, e.g. 2:4.")
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
