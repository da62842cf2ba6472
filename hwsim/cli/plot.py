"""``hwsim plot roofline|energy|timeline|compare``, ``hwsim trace``, and the charts of
stored serving runs ``hwsim plot latency-cdf|throughput-latency|serve-timeline``.

The first four take the workload and plan options of ``hwsim simulate`` and write a figure
(``-o FILE.png|svg|pdf``) or a Chrome/Perfetto trace (``-o trace.json``); the serving
charts read the directories ``hwsim serve -o DIR`` wrote. Figures are
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


def _run(archs: tuple[str, ...], default: tuple[str, ...], model: str, phase: str | None,
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


def save_figure(figure: Any, output: Path) -> None:
    from hwsim.plot import save_figure as save

    save(figure, output)


def _save(figure: Any, output: Path, results: list[Result]) -> None:
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
      hwsim plot latency-cdf runs/rate2 runs/rate8 -o cdf.png
    """


@plot_group.command("roofline")
@_archs_option(("h100-sxm",))
@workload_options
@plan_options
@click.option("--peak-dtype", "peak_dtypes", multiple=True, metavar="DTYPE",
              help="Dtype peak to draw; repeat for several [default: every dtype the chip supports].")
@_output_option("Figure file (.png, .svg or .pdf).")
def roofline_cmd(archs: tuple[str, ...], model: str, phase: str | None, peak_dtypes: tuple[str, ...],
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
def energy_cmd(archs: tuple[str, ...], model: str, phase: str | None, by: str, per_token: bool, output: Path,
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
def timeline_cmd(arch: str, model: str, phase: str | None, output: Path, **opts: Any) -> None:
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
def compare_cmd(archs: tuple[str, ...], model: str, phase: str | None, output: Path, **opts: Any) -> None:
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
def trace_cmd(archs: tuple[str, ...], model: str, phase: str | None, output: Path, **opts: Any) -> None:
    """Write the schedule as a Chrome/Perfetto trace: one process per architecture,
    one thread per lane (compute, memory:<level>, link:<group>)."""
    from hwsim.trace import check_trace_path, write_trace

    check_trace_path(output)
    results, systems = _run(archs, ("h100-sxm",), model, phase, opts)
    write_trace(results, output, chips=systems)
    click.echo(f"wrote {output}")



def _runs_argument(func: F) -> F:
    return click.argument("runs", nargs=-1, required=True,
                          type=click.Path(file_okay=False, path_type=Path))(func)


def _run_names(runs: tuple[Path, ...]) -> list[str]:
    """Directory names, or whole paths where two runs share a name."""
    names = [run.name or str(run) for run in runs]
    return names if len(set(names)) == len(names) else [str(run) for run in runs]


@plot_group.command("latency-cdf")
@_runs_argument
@click.option("--metric", "metrics", multiple=True, metavar="COLUMN",
              help="Request column in s (ttft_s, tpot_s, e2e_s, queue_s, itl_max_s); repeat for "
                   "several [default: ttft_s, tpot_s, e2e_s].")
@_output_option("Figure file (.png, .svg or .pdf).")
def latency_cdf_cmd(runs: tuple[Path, ...], metrics: tuple[str, ...], output: Path) -> None:
    """Latency CDFs of stored serving runs (`hwsim serve -o DIR`), one curve per run."""
    import pandas as pd

    from hwsim.plot import new_figure
    from hwsim.plot.serving import LATENCY_METRICS, LatencyCDFDisplay
    from hwsim.serve_files import read_run

    output = _figure_path(output)
    columns = metrics or LATENCY_METRICS
    names = _run_names(runs)
    frame = pd.concat([read_run(run)[0].assign(run=name) for run, name in zip(runs, names, strict=True)],
                      ignore_index=True)
    fig, axes = new_figure(n_axes=len(columns), figsize=(3.6 * len(columns) + 0.8, 3.6))
    LatencyCDFDisplay.from_frame(frame, label="run", metrics=columns, ax=axes)
    save_figure(fig, output)
    click.echo(f"wrote {output}")


@plot_group.command("throughput-latency")
@_runs_argument
@click.option("--metric", type=click.Choice(["ttft", "tpot", "e2e", "itl", "queue"]), default="ttft",
              show_default=True, help="The latency on the y axis.")
@click.option("--slo-ms", type=float, default=None, help="Draw this latency limit (ms).")
@_output_option("Figure file (.png, .svg or .pdf).")
def throughput_latency_cmd(runs: tuple[Path, ...], metric: str, slo_ms: float | None, output: Path) -> None:
    """Output tokens/s against p50 and p99 latency of stored serving runs (at several rates);
    runs of one configuration (arch, model, scheduler, plan) make one curve."""
    import pandas as pd

    from hwsim.plot import new_figure
    from hwsim.plot.serving import ThroughputLatencyDisplay, summary_labels
    from hwsim.serve_files import read_run

    output = _figure_path(output)
    summaries = [read_run(run)[2] for run in runs]
    frame = pd.DataFrame(summaries).assign(label=summary_labels(summaries))
    fig, ax = new_figure(figsize=(6.5, 4.2))
    ThroughputLatencyDisplay.from_frame(frame, metric=metric, slo_s=slo_ms / 1e3 if slo_ms else None, ax=ax)
    save_figure(fig, output)
    click.echo(f"wrote {output}")


@plot_group.command("serve-timeline")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quantity", "quantities", multiple=True, metavar="COLUMN",
              help="Iteration column or kv_usage_pct; repeat for several "
                   "[default: kv_usage_pct, batch_size, queue_len].")
@_output_option("Figure file (.png, .svg or .pdf).")
def serve_timeline_cmd(run: Path, quantities: tuple[str, ...], output: Path) -> None:
    """KV-cache usage, batch size and queue length over time of a stored serving run,
    a line per replica."""
    from hwsim.plot import new_figure
    from hwsim.plot.serving import TIMELINE_QUANTITIES, ServingTimelineDisplay
    from hwsim.serve_files import read_run
    from hwsim.serve_trace import server_names

    output = _figure_path(output)
    _, iterations, summary = read_run(run)
    chosen = quantities or TIMELINE_QUANTITIES
    fig, axes = new_figure(n_axes=len(chosen), figsize=(9.0, 1.0 + 1.9 * len(chosen)), stacked=True)
    ServingTimelineDisplay.from_frame(iterations, names=server_names(summary.get("config")),
                                      quantities=chosen, ax=axes)
    save_figure(fig, output)
    click.echo(f"wrote {output}")
