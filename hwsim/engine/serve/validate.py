"""Checks shared by the request constructors: every problem becomes a
:class:`~hwsim.errors.ConfigError` line ``source: where: problem``, where ``where`` names
the argument, or the row (1-based, with its file line when known) and the column."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hwsim.errors import ConfigError

#: At most this many bad cells are listed; the rest are counted.
MAX_LISTED = 20

LENGTH_COLUMNS = ("prompt_len", "output_len")


def config_error(source: str, where: str, problem: str) -> ConfigError:
    """One-problem ConfigError, formatted ``source: where: problem``."""
    return ConfigError([f"{source}: {where}: {problem}"])


def check_count(value: Any, source: str, name: str) -> int:
    """``value`` as a whole number >= 1 (``n``, a maximum length...)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise config_error(source, name, f"must be a whole number >= 1, got {value!r}")
    return int(value)


def check_positive(value: Any, source: str, name: str) -> float:
    """``value`` as a finite float > 0 (a rate, a CV, a time limit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise config_error(source, name, f"must be a finite number > 0, got {value!r}")
    return float(value)


def check_length_spec(spec: Any, source: str, name: str, max_len: int | None) -> np.ndarray:
    """A fixed length (int) or a non-empty sequence of lengths, as int64 >= 1 and at most
    ``max_len`` (fixed lengths are refused, not clipped, above the maximum)."""
    if isinstance(spec, (bool, str)) or not isinstance(spec, (int, float, np.number, Sequence,
                                                              np.ndarray)):
        raise config_error(source, name, "must be an int, a sequence of ints or a distribution "
                           f"with an rvs() method (scipy.stats), got {type(spec).__name__}")
    values = np.atleast_1d(np.asarray(spec, dtype=object))
    if values.ndim != 1 or values.size == 0:
        raise config_error(source, name, "a sequence of lengths must be one-dimensional and non-empty")
    bad = [v for v in values if isinstance(v, bool) or not _is_whole(v) or v < 1]
    if bad:
        raise config_error(source, name, f"lengths must be whole numbers >= 1, got {bad[0]!r}")
    out = values.astype(np.int64)
    if max_len is not None and out.max() > max_len:
        raise config_error(source, name, f"length {out.max()} exceeds the maximum {max_len}")
    return out


def _is_whole(value: Any) -> bool:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f == int(f)


def _numeric(raw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64, and a mask of cells that held something that is not a number."""
    arr = np.asarray(raw)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64), np.zeros(arr.shape, dtype=bool)
    series = pd.Series(arr.reshape(-1), dtype=object)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    not_number = np.isnan(values) & series.notna().to_numpy()
    return values.reshape(arr.shape), not_number.reshape(arr.shape)


def _show(value: Any) -> str:
    """A cell as the user wrote it: strings quoted, numpy scalars as plain numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _column_problems(name: str, values: np.ndarray, not_number: np.ndarray,
                     raw: np.ndarray) -> list[tuple[int, str]]:
    """``(row index, problem)`` for every bad cell of one column."""
    problems: list[tuple[int, str]] = []
    missing = np.isnan(values) & ~not_number
    for i in np.flatnonzero(not_number):
        problems.append((int(i), f"not a number: {_show(raw[i])}"))
    for i in np.flatnonzero(missing):
        problems.append((int(i), "missing value"))
    ok = ~np.isnan(values)
    if name == "arrival_s":
        for i in np.flatnonzero(ok & ~np.isfinite(values)):
            problems.append((int(i), f"arrival must be finite, got {_show(raw[i])}"))
        for i in np.flatnonzero(ok & np.isfinite(values) & (values < 0)):
            problems.append((int(i), f"arrival must be >= 0 s, got {_show(raw[i])}"))
        return problems
    whole = ok & np.isfinite(values) & (values == np.trunc(np.where(np.isfinite(values), values, 0)))
    for i in np.flatnonzero(ok & ~whole):
        problems.append((int(i), f"must be a whole number, got {_show(raw[i])}"))
    low = -1 if name == "prefix_id" else 1
    what = "a prefix id >= -1 (-1 = none)" if name == "prefix_id" else "a length >= 1 token"
    for i in np.flatnonzero(whole & (values < low)):
        problems.append((int(i), f"must be {what}, got {_show(raw[i])}"))
    return problems


def check_arrays(columns: Mapping[str, Any], source: str, *, sort: bool = False,
                 first_line: int | None = None) -> dict[str, np.ndarray]:
    """Validate the four request columns and return them as float64 / int64 arrays.

    Parameters
    ----------
    columns : mapping
        ``arrival_s, prompt_len, output_len, prefix_id`` to array-likes of equal length.
    source : str
        Named first in every message.
    sort : bool
        Sort rows by arrival (stably) instead of refusing decreasing arrivals.
    first_line : int, optional
        File line of row 1, so messages read ``row 3 (line 4)``.
    """
    raws = {name: np.asarray(columns[name]) for name in ("arrival_s", "prompt_len", "output_len",
                                                         "prefix_id")}
    n = raws["arrival_s"].size
    for name, raw in raws.items():
        if raw.ndim != 1 or raw.size != n:
            raise config_error(source, name, f"must be one-dimensional with {n} entries (one per "
                               f"request), got shape {raw.shape}")
    if n == 0:
        raise config_error(source, "rows", "no requests")
    problems: list[tuple[int, str, str]] = []
    parsed: dict[str, np.ndarray] = {}
    for name, raw in raws.items():
        values, not_number = _numeric(raw)
        parsed[name] = values
        problems += [(i, name, p) for i, p in _column_problems(name, values, not_number, raw)]
    if problems:
        raise ConfigError(_format(sorted(problems), source, first_line))
    arrival = parsed["arrival_s"]
    if sort:
        order = np.argsort(arrival, kind="stable")
    else:
        drops = np.flatnonzero(np.diff(arrival) < 0)
        if drops.size:
            i = int(drops[0]) + 1
            raise config_error(source, f"{_row(i, first_line)}, column arrival_s",
                               f"arrivals must be non-decreasing: {_show(arrival[i])} s follows "
                               f"{_show(arrival[i - 1])} s (Requests.from_frame sorts a trace)")
        order = np.arange(n)
    out = {"arrival_s": arrival[order].astype(np.float64)}
    for name in (*LENGTH_COLUMNS, "prefix_id"):
        out[name] = parsed[name][order].astype(np.int64)
    return out


def _row(i: int, first_line: int | None) -> str:
    return f"row {i + 1}" + (f" (line {first_line + i})" if first_line is not None else "")


def _format(problems: list[tuple[int, str, str]], source: str, first_line: int | None) -> list[str]:
    lines = [f"{source}: {_row(i, first_line)}, column {name}: {problem}"
             for i, name, problem in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"{source}: ... and {len(problems) - MAX_LISTED} more bad values")
    return lines
