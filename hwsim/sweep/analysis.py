"""Analysis of sweep rows: Pareto fronts, best points, sensitivities.

All functions take the results frame (one row per point and workload, ``param_*``
columns, metric columns, ``error``) and use only rows without an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hwsim.errors import ConfigError
from hwsim.sweep.expr import ExprError, parse_expr

Senses = Mapping[str, str]


def pareto_mask(values: np.ndarray, senses: Sequence[str] | None = None) -> np.ndarray:
    """Which rows of ``values`` (n points x k objectives) are Pareto-optimal.

    A point is on the front if no other point is at least as good in every objective
    and strictly better in one. ``senses[j]`` is ``"min"`` (default) or ``"max"``. Rows
    with a NaN are never on the front; equal points are all on it.

    Two objectives cost O(n log n) (a sort and a running minimum); more objectives
    O(n x front size), vectorised.

    >>> pareto_mask(np.array([[1, 3], [2, 2], [3, 1], [2, 3]])).tolist()
    [True, True, True, False]
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError("values must be a 2-D array (points x objectives)")
    n, k = v.shape
    sign = np.array([-1.0 if s == "max" else 1.0 for s in (senses or ["min"] * k)])
    if sign.shape != (k,):
        raise ValueError(f"{k} objectives but {len(sign)} senses")
    mask = np.zeros(n, dtype=bool)
    ok = ~np.isnan(v).any(axis=1)
    if not ok.any():
        return mask
    unique, inverse = np.unique(v[ok] * sign, axis=0, return_inverse=True)  # lexicographic order
    front = _front_sorted(unique)
    mask[np.flatnonzero(ok)] = front[inverse.ravel()]
    return mask


def _front_sorted(u: np.ndarray) -> np.ndarray:
    """Front of distinct points sorted lexicographically (all objectives minimised)."""
    m, k = u.shape
    if k == 1:
        return np.arange(m) == 0
    if k == 2:
        # Sorted by f0 then f1: a point is dominated iff an earlier one has f1 <= its f1.
        earlier_min = np.concatenate([[np.inf], np.minimum.accumulate(u[:-1, 1])])
        return u[:, 1] < earlier_min
    keep = np.ones(m, dtype=bool)
    idx = np.arange(m)
    i = 0
    while i < len(idx):
        # A lexicographically earlier point is never dominated by a later one, so the
        # point at i is on the front; drop everything it dominates.
        p = u[idx[i]]
        rest = u[idx]
        dominated = np.all(rest >= p, axis=1) & np.any(rest > p, axis=1)
        keep[idx[dominated]] = False
        idx = idx[~dominated]
        i += 1
    return keep


def feasible(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows without an error (evaluated and within every constraint)."""
    return frame[frame["error"].isna()] if "error" in frame else frame


def _check_objectives(frame: pd.DataFrame, objectives: Senses) -> None:
    missing = [o for o in objectives if o not in frame.columns]
    if missing:
        raise ConfigError([f"objectives: no column {', '.join(missing)} in the results"])
    bad = {o: s for o, s in objectives.items() if s not in ("min", "max")}
    if bad:
        raise ConfigError([f"objectives.{o}: sense must be min or max, not {s!r}" for o, s in bad.items()])


def pareto_front(frame: pd.DataFrame, objectives: Senses) -> pd.DataFrame:
    """Pareto-optimal feasible rows over ``objectives`` (name -> ``"min"``/``"max"``),
    computed per workload, sorted by workload and the first objective."""
    _check_objectives(frame, objectives)
    ok = feasible(frame)
    parts = []
    for _, group in ok.groupby("workload", sort=True) if "workload" in ok else [(None, ok)]:
        values = group[list(objectives)].to_numpy(dtype=float)
        parts.append(group[pareto_mask(values, list(objectives.values()))])
    if not parts:
        return ok.iloc[0:0]
    front = pd.concat(parts)
    by = (["workload"] if "workload" in front else []) + [next(iter(objectives))]
    return front.sort_values(by, kind="stable")


def _column_env(frame: pd.DataFrame) -> dict[str, str]:
    """Names usable in a ``where`` expression -> frame column."""
    env = {c: c for c in frame.columns}
    env.update({c.removeprefix("param_"): c for c in frame.columns if c.startswith("param_")})
    return env


def select(frame: pd.DataFrame, where: Sequence[str] = ()) -> pd.DataFrame:
    """Rows for which every comparison in ``where`` (e.g. ``"area_mm2 <= 100"``) holds."""
    env = _column_env(frame)
    keep = np.ones(len(frame), dtype=bool)
    for text in where:
        try:
            expr = parse_expr(text)
        except ExprError as exc:
            raise ConfigError([f"where: {text!r}: {exc}"]) from None
        unknown = sorted(expr.names - set(env))
        if unknown or not expr.is_comparison:
            why = f"unknown name {', '.join(unknown)}" if unknown else "not a comparison"
            raise ConfigError([f"where: {text!r}: {why}"])
        columns = {name: frame[env[name]].to_numpy() for name in expr.names}
        with np.errstate(invalid="ignore"):
            keep &= np.asarray(expr.evaluate(columns), dtype=bool)
    return frame[keep]


def best_point(frame: pd.DataFrame, objective: str, sense: str = "min",
               where: Sequence[str] = ()) -> pd.Series:
    """The feasible row with the best ``objective`` among those meeting ``where``.

    Raises
    ------
    ConfigError
        If no feasible row meets ``where``.
    """
    _check_objectives(frame, {objective: sense})
    rows = select(feasible(frame), where).dropna(subset=[objective])
    if rows.empty:
        cond = f" with {' and '.join(where)}" if where else ""
        raise ConfigError([f"best {objective}: no feasible point{cond}"])
    values = rows[objective].to_numpy(dtype=float)
    return rows.iloc[int(np.argmin(values) if sense == "min" else np.argmax(values))]


def sensitivity(frame: pd.DataFrame, params: Sequence[str], objectives: Sequence[str]) -> pd.DataFrame:
    """How much each objective moves with each parameter, over the feasible rows.

    Returns one row per (parameter, objective) with

    - ``spearman_rho``: Spearman rank correlation (monotone trend, -1 ... 1; NaN when
      either column is constant);
    - ``main_effect_range``: spread of the objective's mean across the parameter's
      distinct values, divided by the objective's overall mean (the sampled analogue of
      a one-at-a-time normalised range; 0: no effect).
    """
    from scipy.stats import spearmanr

    ok = feasible(frame)
    rows = []
    for param in params:
        col = f"param_{param}" if f"param_{param}" in ok else param
        x = pd.to_numeric(ok[col], errors="coerce")
        for obj in objectives:
            y = pd.to_numeric(ok[obj], errors="coerce")
            good = x.notna() & y.notna()
            rho = rng = float("nan")
            if good.sum() >= 3 and x[good].nunique() > 1 and y[good].nunique() > 1:
                rho = float(spearmanr(x[good], y[good]).statistic)
            if good.any() and x[good].nunique() > 1:
                means = y[good].groupby(x[good]).mean()
                scale = abs(float(y[good].mean())) or 1.0
                rng = float((means.max() - means.min()) / scale)
            rows.append({"parameter": param, "objective": obj, "spearman_rho": rho, "main_effect_range": rng})
    return pd.DataFrame(rows, columns=["parameter", "objective", "spearman_rho", "main_effect_range"])
