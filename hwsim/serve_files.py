"""A serving run on disk: what ``hwsim serve -o DIR`` writes and ``hwsim plot`` reads.

A run directory holds ``requests.parquet`` and ``iterations.parquet`` (or ``.csv``), the
frames of :class:`~hwsim.engine.serve.result.ServeResult`, and ``summary.json``, its
:meth:`~hwsim.engine.serve.result.ServeResult.to_json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.engine.serve.result import ServeResult
from hwsim.errors import ConfigError

RUN_FILES = ("requests", "iterations")


def write_run(result: ServeResult, directory: Path, csv: bool = False) -> list[Path]:
    """Write ``requests``, ``iterations`` (Parquet, or CSV) and ``summary.json`` under
    ``directory`` (created); return the paths.

    Raises
    ------
    ConfigError
        If the directory or a file cannot be written.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, frame in (("requests", result.requests), ("iterations", result.iterations)):
            path = directory / f"{name}.{'csv' if csv else 'parquet'}"
            frame.to_csv(path, index=False) if csv else frame.to_parquet(path, index=False)
            paths.append(path)
        summary = directory / "summary.json"
        summary.write_text(result.to_json() + "\n")
    except OSError as exc:
        raise ConfigError([f"{directory}: cannot write the run ({exc.strerror or exc})"]) from None
    return [*paths, summary]


def read_run(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The request and iteration frames and the summary a ``hwsim serve -o DIR`` wrote.

    Raises
    ------
    ConfigError
        If ``directory`` is not a run directory or a file cannot be read.
    """
    summary_path = directory / "summary.json"
    if not summary_path.is_file():
        raise ConfigError([f"{directory}: not a serving run (no summary.json; write one with "
                           "`hwsim serve ... -o DIR`)"])
    try:
        summary = json.loads(summary_path.read_text())
        frames = []
        for name in RUN_FILES:
            parquet, csv = directory / f"{name}.parquet", directory / f"{name}.csv"
            if parquet.is_file():
                frames.append(pd.read_parquet(parquet))
            elif csv.is_file():
                frames.append(pd.read_csv(csv))
            else:
                raise ConfigError([f"{directory}: no {name}.parquet or {name}.csv"])
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{directory}: cannot read the run ({exc})"]) from None
    return frames[0], frames[1], summary
