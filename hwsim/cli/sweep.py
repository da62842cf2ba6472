"""``hwsim sweep``: run a design-space sweep (or search) from a spec file and print its
Pareto front. Rows are persisted under ``-o`` as they finish; ``--resume`` finishes a
sweep that was interrupted."""

from __future__ import annotations

import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import click
import pandas as pd

from hwsim.cli.group import main
from hwsim.report import format_table
from hwsim.sweep.executors import EXECUTORS
from hwsim.sweep.result import SweepResult
from hwsim.sweep.run import SEARCHES, sweep
from hwsim.sweep.store import SweepWarning


class _Bar:
    """A click progress bar (with ETA) on stderr, created when the total is known."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        if self.bar is None:
            bar: Any = click.progressbar(length=total, label="sweep", show_eta=True, show_pos=True,
                                         file=sys.stderr)
            self.bar = bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def front_table(result: SweepResult, front: pd.DataFrame, top: int) -> str:
    """The Pareto rows as an aligned table: point, workload, parameters, objectives."""
    params = [f"param_{p}" for p in result.spec.parameters]  # sampled; derived ones follow from them
    objectives = list(result.objectives)
    extra = [c for c in ("bound",) if c in front.columns]
    columns = ["point_id", *(["workload"] if front["workload"].nunique() > 1 else []), *params, *objectives,
               *extra]
    rows = [[_plain(v) for v in row] for row in front[columns].head(top).itertuples(index=False)]
    return format_table([c.removeprefix("param_") for c in columns], rows)


def _summary(result: SweepResult, seconds: float, n_new: int) -> list[str]:
    frame = result.frame
    errors = frame["error"].dropna()
    where = f" -> {result.directory}" if result.directory else ""
    lines = [f"sweep {result.spec.name} ({result.sweep_id}): {len(frame)} rows, {len(frame) - len(errors)} "
             f"feasible, {len(errors)} rejected or failed; {n_new} evaluated in {seconds:.1f} s{where}"]
    for reason, count in Counter(e.split(" (")[0] for e in errors).most_common(3):
        lines.append(f"  {count} x {reason[:150]}")
    return lines


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    click.echo(f"warning: {message}", err=True)


@main.command("sweep")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Results directory (Parquet parts and sweep.json), written as points finish.")
@click.option("--executor", type=click.Choice(EXECUTORS), default=None,
              help="Where points run [default: process, or dask with --scheduler].")
@click.option("--scheduler", metavar="tcp://HOST:8786", help="Dask scheduler address (--executor dask).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Processes of the process executor [default: CPUs].")
@click.option("--resume", is_flag=True, help="Finish the sweep already in --out (same spec).")
@click.option("--search", type=click.Choice(SEARCHES),
              help="Optuna multi-objective search instead of sampling.")
@click.option("--trials", "n_trials", type=int, help="Search trials in all [default: the spec's, or 100].")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Pareto rows to print.")
@click.option("--flush-rows", type=click.IntRange(min=1), default=256, show_default=True,
              help="Rows per Parquet part file (fewer: less to redo after a crash).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sweep_cmd(spec: Path, out_dir: Path, executor: str | None, scheduler: str | None, workers: int | None,
              resume: bool, search: str | None, n_trials: int | None, top: int, flush_rows: int,
              no_progress: bool) -> None:
    """Sweep (or search) the design space a SPEC file describes and print its Pareto front.

    \b
    Examples:
      hwsim sweep workloads/sweeps/tpu-like.yaml -o results/tpu-like
      hwsim sweep spec.yaml -o results/x --resume
      hwsim sweep spec.yaml -o results/x --executor dask --scheduler tcp://10.0.0.5:8786
      hwsim sweep spec.yaml -o results/x --search nsga2 --trials 200
    """
    bar = _Bar(not no_progress)
    start = time.perf_counter()
    counted = {"n": 0}

    def progress(done: int, total: int) -> None:
        counted["n"] = done
        bar(done, total)

    try:
        with warnings.catch_warnings():
            # A repaired results directory (a part set aside) is said as the CLI says errors.
            warnings.simplefilter("always", SweepWarning)
            warnings.showwarning = _show_warning
            result = sweep(spec, out_dir, executor=executor or ("dask" if scheduler else "process"),
                           workers=workers, scheduler=scheduler, resume=resume, search=search,
                           n_trials=n_trials, flush_rows=flush_rows, progress=progress)
    finally:
        bar.close()
    for line in _summary(result, time.perf_counter() - start, counted["n"]):
        click.echo(line)
    front = result.pareto()
    if front.empty:
        click.echo("no feasible point: no Pareto front")
        return
    shown = f"showing {top} of {len(front)}" if len(front) > top else f"{len(front)} points"
    senses = ", ".join(f"{o} ({s})" for o, s in result.objectives.items())
    click.echo(f"\nPareto front over {senses}; {shown}:")
    click.echo(front_table(result, front, top))
