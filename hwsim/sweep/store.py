"""Persisting sweep rows as they finish: Parquet part files in one directory.

Why Parquet rather than SQLite: rows are written by one process (the driver; workers
only compute), so SQLite's concurrent-writer machinery buys nothing, while Parquet keeps
typed columns (``param_*`` ints stay ints), compresses well for millions of rows, and a
results directory is read directly by pandas, pyarrow, Dask or DuckDB.

Crash safety: each batch of finished rows becomes one part file written under a
temporary name, synced, then renamed (an atomic step on POSIX), so a killed sweep leaves
only whole parts. ``sweep.json`` records the sweep's identity (a hash of its canonical
spec); resuming reads the ``(point_id, workload)`` keys of every part and evaluates only
the rest, so no point is lost or stored twice. Rows still in memory when the process is
killed (at most one batch) are simply evaluated again on resume.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.errors import ConfigError

MANIFEST = "sweep.json"
FORMAT_VERSION = 1
Key = tuple[int, str]


def _pa_type(kind: str) -> Any:
    import pyarrow as pa

    return {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}[kind]


class ResultStore:
    """Rows of one sweep: in memory, and in ``directory`` when given.

    Parameters
    ----------
    directory : path, optional
        Results directory; None keeps rows in memory only.
    sweep_id : str
        Identity of the sweep (see :meth:`SweepSpec.sweep_id`).
    columns : dict
        Column name -> ``"int" | "float" | "bool" | "str"``, in order.
    manifest : dict
        Extra data stored in ``sweep.json`` (spec, mode, number of rows).
    flush_rows, flush_s : int, float
        A part file is written when this many rows wait, or this many seconds passed.
    """

    def __init__(self, directory: str | Path | None, sweep_id: str, columns: dict[str, str],
                 manifest: dict[str, Any], flush_rows: int = 256, flush_s: float = 2.0) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.sweep_id = sweep_id
        self.columns = columns
        self.manifest = {"format": FORMAT_VERSION, "sweep_id": sweep_id, **manifest}
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._pending: list[dict[str, Any]] = []
        self._memory: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._seq = 0

    # Opening -----------------------------------------------------------------------------

    def open(self, resume: bool) -> set[Key]:
        """Prepare the directory; return the keys already stored (resume) or raise.

        Raises
        ------
        ConfigError
            If the directory holds another sweep, or this one without ``resume``.
        """
        if self.directory is None:
            return set()
        d = self.directory
        if d.exists() and not d.is_dir():
            raise ConfigError([f"{d}: not a directory"])
        d.mkdir(parents=True, exist_ok=True)
        for tmp in d.glob("*.parquet.tmp"):  # a part being written when a run was killed
            tmp.unlink()
        parts = self._parts()
        old = self._read_manifest()
        if old is None and parts:
            raise ConfigError([f"{d}: holds part files but no {MANIFEST}; choose an empty directory"])
        if old is not None and old.get("sweep_id") != self.sweep_id:
            raise ConfigError([f"{d}: holds sweep {old.get('sweep_id')} ({old.get('name')}), not this spec's "
                               f"{self.sweep_id}; choose another output directory or remove it"])
        keys = self.stored_keys()
        if keys and not resume:
            total = self.manifest.get("n_rows", "?")
            raise ConfigError([f"{d}: already holds {len(keys)} of {total} rows of this sweep; pass "
                               "--resume (resume=True) to finish it, or remove the directory"])
        self._seq = 1 + max((int(p.name.split("-")[1].split(".")[0]) for p in parts), default=-1)
        tmp = d / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, d / MANIFEST)
        return keys

    def _read_manifest(self) -> dict[str, Any] | None:
        assert self.directory is not None
        return read_manifest(self.directory) if (self.directory / MANIFEST).exists() else None

    def _parts(self) -> list[Path]:
        assert self.directory is not None
        return sorted(self.directory.glob("part-*.parquet"))

    def stored_keys(self) -> set[Key]:
        """``(point_id, workload)`` of every row already in the directory."""
        import pyarrow.parquet as pq

        if self.directory is None:
            return {(r["point_id"], r["workload"]) for r in self._memory}
        keys: set[Key] = set()
        for part in self._parts():
            table = pq.read_table(part, columns=["point_id", "workload"])
            keys.update(zip(table.column("point_id").to_pylist(), table.column("workload").to_pylist(),
                            strict=True))
        return keys

    # Writing -----------------------------------------------------------------------------

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Take finished rows; write a part file when enough rows or time accumulated."""
        if self.directory is None:
            self._memory.extend(rows)
            return
        self._pending.extend(rows)
        if len(self._pending) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def _table(self, rows: list[dict[str, Any]]) -> Any:
        import pyarrow as pa

        schema = pa.schema([(name, _pa_type(kind)) for name, kind in self.columns.items()])
        data = {}
        for name, kind in self.columns.items():
            values = [r.get(name) for r in rows]
            if kind == "str":
                values = [None if v is None else str(v) for v in values]
            elif kind == "float":
                values = [None if v is None else float(v) for v in values]
            data[name] = values
        return pa.Table.from_pydict(data, schema=schema)

    def flush(self) -> None:
        """Write the waiting rows as one part file (atomically)."""
        import pyarrow.parquet as pq

        self._last_flush = time.monotonic()
        if self.directory is None or not self._pending:
            return
        final = self.directory / f"part-{self._seq:06d}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(self._table(self._pending), tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._seq += 1
        self._pending = []

    # Reading -----------------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """Every stored row (this run's and earlier runs'), sorted by point and workload."""
        if self.directory is None:  # through the same typed table as the files
            return _tidy(self._table(self._memory).to_pandas())
        return read_results(self.directory)


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop_duplicates(["point_id", "workload"], keep="first")
    return frame.sort_values(["point_id", "workload"], kind="stable").reset_index(drop=True)


def read_results(directory: str | Path) -> pd.DataFrame:
    """Every row persisted in a results directory, sorted by ``point_id`` and ``workload``.

    Raises
    ------
    ConfigError
        If the directory holds no sweep.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = Path(directory)
    if not (d / MANIFEST).exists():
        raise ConfigError([f"{d}: no {MANIFEST}: not a sweep results directory"])
    tables = [pq.read_table(p) for p in sorted(d.glob("part-*.parquet"))]
    if not tables:
        return pd.DataFrame(columns=["point_id", "workload", "error"])
    frame = pa.concat_tables(tables).to_pandas()
    return _tidy(frame)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The ``sweep.json`` of a results directory (identity, mode, spec)."""
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{path}: cannot read the sweep manifest: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: <root>: expected a mapping (the sweep manifest)"])
    return data
