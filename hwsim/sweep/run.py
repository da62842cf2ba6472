"""Running a sweep: check the spec, draw the points, evaluate the missing ones on an
executor, persist rows as they finish, and return a :class:`SweepResult`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwsim._yaml import read_yaml
from hwsim.errors import ConfigError
from hwsim.sweep.capacity import CAPACITY_METRICS
from hwsim.sweep.check import CompiledSpec, check_spec
from hwsim.sweep.evaluate import Task, evaluate_tasks, param_column
from hwsim.sweep.executors import Executor, make_executor
from hwsim.sweep.result import SweepResult
from hwsim.sweep.sample import sample_points
from hwsim.sweep.spec import METRICS, SearchSpec, SweepSpec, spec_from_dict
from hwsim.sweep.store import ResultStore

#: progress(rows_done, rows_total) of this run; called once with 0 before any work.
Progress = Callable[[int, int], None]
SEARCHES = ("nsga2", "tpe")


def _value_kind(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "float"
    return "str"


def result_columns(spec: SweepSpec) -> dict[str, str]:
    """Column name -> kind (``int``, ``float``, ``bool``, ``str``) of a sweep's rows."""
    columns = {"point_id": "int", "workload": "str"}
    for path in spec.param_paths:
        p = spec.parameters.get(path)
        if p is None:
            kind = "float"  # derived
        elif p.values is not None:
            kind = _value_kind(p.values)
        else:
            kind = "int" if p.integer else "float"
        columns[param_column(path)] = kind
    columns |= dict.fromkeys(METRICS, "float")
    if spec.has_capacity:
        columns |= dict.fromkeys(CAPACITY_METRICS, "float")
    columns |= {"bound": "str", "error": "str"}
    return columns


def _as_spec(spec: SweepSpec | dict[str, Any] | str | Path) -> tuple[SweepSpec, str]:
    """The spec and its source for messages; validated but not yet checked (``sweep``
    checks it once, as a search or a sampling)."""
    if isinstance(spec, SweepSpec):
        return spec, f"sweep spec '{spec.name}'"
    if isinstance(spec, dict):
        return spec_from_dict(spec), "<dict>"
    return spec_from_dict(read_yaml(Path(spec)), str(spec)), str(spec)


def _chunks(tasks: list[Task], size: int) -> list[list[Task]]:
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def _effective_search(spec: SweepSpec, search: str | None, n_trials: int | None) -> SearchSpec | None:
    if search is None:
        if n_trials is not None:
            raise ConfigError(["--trials: only a search (--search nsga2|tpe) takes a number of trials"])
        return None
    if search not in SEARCHES:
        raise ConfigError([f"--search: unknown search {search!r} (known: {', '.join(SEARCHES)})"])
    base = spec.search or SearchSpec()
    update: dict[str, Any] = {"method": search}
    if n_trials is not None:
        if n_trials <= 0:
            raise ConfigError([f"--trials: must be at least 1, got {n_trials}"])
        update["n_trials"] = n_trials
    return base.model_copy(update=update)


def sweep(
    spec: SweepSpec | dict[str, Any] | str | Path,
    out_dir: str | Path | None = None,
    *,
    executor: str | Executor = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    resume: bool = False,
    search: str | None = None,
    n_trials: int | None = None,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    flush_rows: int = 256,
) -> SweepResult:
    """Evaluate every point of ``spec`` (sampling) or search its space (``search``).

    Parameters
    ----------
    spec : SweepSpec, dict or path
        The sweep (a YAML path is read as :func:`load_spec` does).
    out_dir : path, optional
        Results directory: rows are persisted there as they finish (Parquet parts).
    executor : {"serial", "process", "dask"} or Executor
        Where points run; ``process`` (default) is a local pool of ``workers`` processes,
        ``dask`` connects to ``scheduler`` (``tcp://HOST:8786``) or uses ``client``.
    resume : bool
        Continue the sweep already in ``out_dir``: only points not stored are evaluated.
    search : {"nsga2", "tpe"}, optional
        Optuna multi-objective search instead of sampling; ``n_trials`` trials in all.
    progress : callable, optional
        ``progress(rows_done, rows_total)`` for this run.

    Raises
    ------
    ConfigError
        For a bad spec or options, before any point is evaluated.
    """
    spec, source = _as_spec(spec)
    search_spec = _effective_search(spec, search, n_trials)
    compiled = check_spec(spec, source, search=search_spec is not None)
    mode = "search" if search_spec else "sample"
    if search_spec:
        spec = spec.model_copy(update={"search": search_spec})
        compiled = CompiledSpec(spec, compiled.derived, compiled.constraints)
    sweep_id = spec.sweep_id(mode)
    points = None if search_spec else sample_points(compiled)
    n_rows = search_spec.n_trials if search_spec else len(points or ()) * len(spec.workloads)
    manifest = {"name": spec.name, "mode": mode, "n_rows": n_rows, "spec": spec.model_dump(mode="json")}
    store = ResultStore(out_dir, sweep_id, result_columns(spec), manifest, flush_rows=flush_rows)
    owned = not isinstance(executor, Executor)
    runner = make_executor(executor, workers, scheduler, client) if isinstance(executor, str) else executor
    try:
        done = store.open(resume)
        if search_spec:
            from hwsim.sweep.search import run_search

            run_search(compiled, search_spec, runner, store, progress)
        else:
            assert points is not None
            _run_points(compiled, points, runner, store, done, progress, chunk_size)
    finally:
        try:
            store.flush()
        finally:
            if owned:
                runner.close()
            store.close()  # the directory's writer lock
    return SweepResult(store.frame(), spec, sweep_id, Path(out_dir) if out_dir is not None else None)


def _run_points(compiled: CompiledSpec, points: list[dict[str, Any]], runner: Executor, store: ResultStore,
                done: set[tuple[int, str]], progress: Progress | None, chunk_size: int | None) -> None:
    spec = compiled.spec
    tasks: list[Task] = [(pid, point, wi) for pid, point in enumerate(points)
                         for wi, w in enumerate(spec.workloads) if (pid, w.name) not in done]
    size = chunk_size or max(1, min(32, math.ceil(len(tasks) / (8 * runner.workers))))
    if progress:
        progress(0, len(tasks))
    n_done = 0
    payload = spec.model_dump(mode="json")
    for rows in runner.run(evaluate_tasks, payload, _chunks(tasks, size)):
        store.add(rows)
        n_done += len(rows)
        if progress:
            progress(n_done, len(tasks))
