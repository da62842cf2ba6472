"""``hwsim plot roofline|energy|timeline|compare`` and ``hwsim trace``.

They take the workload and plan options of ``hwsim simulate`` and write a figure
(``-o FILE.png|svg|pdf``) or a Chrome/Perfetto trace (``-o trace.json``). Figures are
drawn outside pyplot (no display needed) by :mod:`hwsim.plot`; this module never
imports matplotlib itself. Importing it registers the commands on :data:`hwsim.cli.group.main`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hwsim.api import simulate
from hwsim.arch.system import System, load_system
from hwsim.cli.group import ErrorGroup, echo_warnings, main
from hwsim.cli.options import (
    DEFAULT_COMPARE_ARCHS,
    build_workload,
    plan_from_options,
    plan_options,
    workload_options,
)
from hwsim.result import Result

F = TypeVar("F", bound=Callable[..., Any])


def _output_option(help_text: str) -> Callable[[F], F]:
    return click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
                        help=help_text)


def _archs_option(default: tuple[str, ...]) -> Callable[[F], F]:
    return click.option("--arch", "archs", multiple=True, metavar="ARCH",
                        help="Architecture or system preset, or a YAML path; repeat to draw several "
                             f"[default: {', '.join(default)}].")


def _run(archs: tuple[str, ...], default: tuple[str, ...], model: str, phase: str,
         opts: dict[str, Any]) -> tuple[list[Result], list[System]]:
    """Simulate the workload the options describe on each architecture; the results and
    the systems they ran on (loaded once: a YAML chip is not found again by its name)."""
    plan = plan_from_options(opts)
    workload = build_workload(model, phase, opts)
    systems = [load_system(arch) for arch in archs or default]
    results = [simulate(workload, system, plan=plan) for system in systems]
    for result in results:
        echo_warnings(result.warnings, prefix=f"{result.arch}: ")
    return results, systems


def _save(figure: Any, output: Path, results: list[Result]) -> None:
    from hwsim.plot import save_figure

    r = results[0]
    params = ", ".join(f"{k}={v}" for k, v in r.params.items() if k not in ("n_layers", "plan", "n_chips"))
    plan = f", {r.params['plan']}" if "plan" in r.params else ""
    figure.suptitle(f"{r.workload} {r.phase} ({params}{plan})", fontsize=9)
    save_figure(figure, output)
    click.echo(f"wrote {output}")


def _figure_path(output: Path) -> Path:
    """Fail on an unknown figure suffix before simulating anything."""
    from hwsim.plot._common import check_figure_path

    return check_figure_path(output)


@main.group("plot", cls=ErrorGroup)
def plot_group() -> None:
    """Draw a chart of a simulation to a .png, .svg or .pdf file.

    \b
    Examples:
      hwsim plot roofline --arch h100-sxm --arch tpu-v4 --phase decode --batch 8 -o roofline.png
      hwsim plot energy --arch h100-sxm --by kind --per-token -o energy.svg
      hwsim plot timeline --arch dgx-h100 --tp 8 --batch 8 -o timeline.png
      hwsim plot compare --phase prefill -o compare.pdf
    """


@plot_group.command("roofline")
@_archs_option(("h100-sxm",))
@workload_options
@plan_options
@click.option("--peak-dtype", "peak_dtypes", multiple=True, metavar="DTYPE",
              help="Dtype peak to draw; repeat for several [default: every dtype the chip supports].")
@_output_option("Figure file (.png, .svg or .pdf).")
def roofline_cmd(archs: tuple[str, ...], model: str, phase: str, peak_dtypes: tuple[str, ...],
                 output: Path, **opts: Any) -> None:
    """Every op under the chip's compute and memory ceilings (log-log)."""
    from hwsim.plot import RooflineDisplay, new_figure

    output = _figure_path(output)
    results, systems = _run(archs, ("h100-sxm",), model, phase, opts)
    fig, ax = new_figure(figsize=(7.5, 5.0))
    RooflineDisplay.from_results(results, chips=systems, dtypes=peak_dtypes or None, ax=ax)
    _save(fig, output, results)


@plot_group.command("energy")
@_archs_option(("h100-sxm",))
@workload_options
@plan_options
@click.option("--by", type=click.Choice(["arch", "kind"]), default="arch", show_default=True,
              help="One bar per architecture, or per op kind of each.")
@click.option("--per-token", is_flag=True, help="Joules per token instead of joules.")
@_output_option("Figure file (.png, .svg or .pdf).")
def energy_cmd(archs: tuple[str, ...], model: str, phase: str, by: str, per_token: bool, output: Path,
               **opts: Any) -> None:
    """Stacked energy bars: compute, each memory level, interconnect, idle."""
    from hwsim.plot import EnergyDisplay, new_figure

    output = _figure_path(output)
    results, _ = _run(archs, ("h100-sxm",), model, phase, opts)
    n_bars = len(results) if by == "arch" else 10 * len(results)
    fig, ax = new_figure(figsize=(max(5.5, 0.55 * n_bars + 3.5), 4.5))
    EnergyDisplay.from_results(results, by="kind" if by == "kind" else "arch",
                               unit="j_per_token" if per_token else "j", ax=ax)
    _save(fig, output, results)


@plot_group.command("timeline")
@click.option("--arch", default="h100-sxm", show_default=True,
              help="Architecture or system preset, or a YAML path.")
@workload_options
@plan_options
@_output_option("Figure file (.png, .svg or .pdf).")
def timeline_cmd(arch: str, model: str, phase: str, output: Path, **opts: Any) -> None:
    """The schedule: compute, memory-port and link lanes over time."""
    from hwsim.plot import TimelineDisplay, new_figure

    output = _figure_path(output)
    (result,), (system,) = _run((arch,), (arch,), model, phase, opts)
    fig, ax = new_figure(figsize=(11.0, 3.8))
    TimelineDisplay.from_result(result, chip=system, ax=ax)
    _save(fig, output, [result])


@plot_group.command("compare")
@_archs_option(DEFAULT_COMPARE_ARCHS)
@workload_options
@plan_options
@_output_option("Figure file (.png, .svg or .pdf).")
def compare_cmd(archs: tuple[str, ...], model: str, phase: str, output: Path, **opts: Any) -> None:
    """Latency, throughput and energy per token across architectures."""
    from hwsim.plot import DEFAULT_METRICS, ComparisonDisplay, new_figure

    output = _figure_path(output)
    results, _ = _run(archs, DEFAULT_COMPARE_ARCHS, model, phase, opts)
    fig, axes = new_figure(n_axes=len(DEFAULT_METRICS), figsize=(11.0, 4.0))
    ComparisonDisplay.from_results(results, ax=axes)
    _save(fig, output, results)


@main.command("trace")
@_archs_option(("h100-sxm",))
@workload_options
@plan_options
@_output_option("Trace file (.json), for https://ui.perfetto.dev or chrome://tracing.")
def trace_cmd(archs: tuple[str, ...], model: str, phase: str, output: Path, **opts: Any) -> None:
    """Write the schedule as a Chrome/Perfetto trace: one process per architecture,
    one thread per lane (compute, memory:<level>, link:<group>)."""
    from hwsim.trace import check_trace_path, write_trace

    check_trace_path(output)
    results, systems = _run(archs, ("h100-sxm",), model, phase, opts)
    write_trace(results, output, chips=systems)
    click.echo(f"wrote {output}")

