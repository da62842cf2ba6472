"""Multi-objective search with Optuna (NSGA-II or TPE) over a sweep spec's space.

The same spec drives it: each parameter becomes an Optuna distribution (a list of values:
categorical; a range: float or int, log-scaled when ``log``), derived parameters and
constraints apply as in sampling, and every trial becomes a row of the same results
table (``point_id`` = trial number). Trials are asked in batches of
``search.batch_size``, evaluated on the executor in parallel, and told in trial order,
so serial, process and Dask runs give the same search. A rejected or failed point is
told as a failed trial.

Resuming re-adds the stored rows to a fresh study as finished trials and asks the rest;
the continued search is valid but not, in general, the trials an uninterrupted run
would have asked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hwsim.sweep.check import CompiledSpec
from hwsim.sweep.evaluate import Task, evaluate_tasks, param_column
from hwsim.sweep.executors import Executor
from hwsim.sweep.sample import with_derived
from hwsim.sweep.spec import ParamSpec, SearchSpec
from hwsim.sweep.store import ResultStore


def _distribution(p: ParamSpec) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.values is not None:
        return CategoricalDistribution(list(p.values))
    assert p.low is not None and p.high is not None
    if p.integer:
        return IntDistribution(math.ceil(p.low), math.floor(p.high), log=p.log)
    return FloatDistribution(p.low, p.high, log=p.log)


def _sampler(search: SearchSpec) -> Any:
    import optuna

    if search.method == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=search.seed, population_size=search.population_size or 50)
    return optuna.samplers.TPESampler(seed=search.seed)


def _values(row: Mapping[Any, Any], objectives: list[str]) -> list[float] | None:
    if row.get("error") is not None:
        return None
    values = [row.get(o) for o in objectives]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return [float(v) for v in values]  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _readd(study: Any, store: ResultStore, dists: dict[str, Any], objectives: list[str]) -> int:
    """Add stored rows to ``study`` as finished trials; return the next point id."""
    import optuna

    frame = store.frame()
    for row in frame.to_dict("records"):
        params = {p: _plain(row[param_column(p)]) for p in dists}
        values = _values(row, objectives)
        state = optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=values,
                                                  state=state))
    return int(frame["point_id"].max()) + 1 if len(frame) else 0


def run_search(compiled: CompiledSpec, search: SearchSpec, runner: Executor, store: ResultStore,
               progress: Any = None) -> None:
    """Ask, evaluate, tell and store ``search.n_trials`` trials in all (stored ones count)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = compiled.spec
    objectives = list(spec.objectives)
    directions: list[Any] = ["minimize" if spec.objectives[o] == "min" else "maximize" for o in objectives]
    dists = {path: _distribution(p) for path, p in spec.parameters.items()}
    study = optuna.create_study(directions=directions, sampler=_sampler(search))
    next_id = _readd(study, store, dists, objectives)
    n_todo = max(0, search.n_trials - len(study.trials))
    payload = spec.model_dump(mode="json")
    if progress:
        progress(0, n_todo)
    n_done = 0
    while n_done < n_todo:
        trials = [study.ask(dists) for _ in range(min(search.batch_size, n_todo - n_done))]
        tasks: list[Task] = [(next_id + i, with_derived(compiled, dict(t.params)), 0)
                             for i, t in enumerate(trials)]
        chunks = runner.run(evaluate_tasks, payload, [[task] for task in tasks])
        rows = [row for chunk in chunks for row in chunk]
        rows.sort(key=lambda r: r["point_id"])
        for trial, row in zip(trials, rows, strict=True):
            values = _values(row, objectives)
            if values is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, values)
        store.add(rows)
        next_id += len(rows)
        n_done += len(rows)
        if progress:
            progress(n_done, n_todo)
