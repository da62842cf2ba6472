"""The one ``hwsim`` click group every command registers on.

Every problem a user can cause (an unknown preset, a malformed file, a model that does
not fit) is an :class:`~hwsim.errors.HwsimError`; it is printed as ``error: <line>`` on
stderr and the command exits with status 2, without a traceback. This module imports no
command: each command module imports :data:`main` and registers itself, and
:mod:`hwsim.cli` imports them all.
"""

from __future__ import annotations

from typing import Any

import click

from hwsim.errors import HwsimError

EXIT_ERROR = 2


def error_lines(exc: HwsimError) -> list[str]:
    """The lines of an error as a user should read them (one problem per line)."""
    lines = getattr(exc, "problems", None) or str(exc).splitlines() or [type(exc).__name__]
    return [str(line) for line in lines]


def fail(lines: list[str]) -> None:
    """Print each line as ``error: <line>`` on stderr and exit with status 2."""
    for line in lines:
        click.echo(f"error: {line}", err=True)
    raise click.exceptions.Exit(EXIT_ERROR)


def echo_warnings(warnings: tuple[str, ...] | list[str], prefix: str = "") -> None:
    """Print each warning as ``warning: <prefix><line>`` on stderr (after the table, so
    stdout stays a table or JSON; the JSON carries them too)."""
    for line in warnings:
        click.echo(f"warning: {prefix}{line}", err=True)


def refuse_warnings(warnings: tuple[str, ...] | list[str], prefix: str = "") -> None:
    """``--strict``: a result that carries warnings is an error (exit status 2)."""
    if warnings:
        fail([f"--strict: {prefix}{line}" for line in warnings])


class ErrorGroup(click.Group):
    """A group that turns :class:`HwsimError` into ``error:`` lines and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HwsimError as exc:
            fail(error_lines(exc))


@click.group(cls=ErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hwsim", prog_name="hwsim")
def main() -> None:
    """Simulate transformer workloads on accelerator architectures.

    \b
    Examples:
      hwsim compare
      hwsim simulate --arch h100-sxm --model llama2-7b --phase decode --batch 8
      hwsim simulate --arch dgx-h100 --model llama2-70b --phase decode --batch 64 --tp 8
      hwsim simulate --arch dgx-h100 --model dlrm-mlperf --phase train --batch 65536 --n-chips 8
      hwsim op gemm --arch tpu-v4 --m 2048 --k 4096 --n 4096
      hwsim list archs
    """
