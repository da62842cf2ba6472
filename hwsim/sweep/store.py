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

A part that cannot be read back (truncated by a full disk, emptied, garbled, or with
another sweep's columns) is set aside on resume: renamed ``part-N.parquet.corrupt``, with
a :class:`SweepWarning` naming it, and its points are evaluated again.

One writer per directory: :meth:`ResultStore.open` takes an exclusive lock on
``sweep.lock`` (a POSIX record lock, which the process pool's forked workers do not
inherit and which the kernel drops when its holder dies, even by SIGKILL), and a second
sweep started into the same directory is refused with a :class:`ConfigError` saying so,
rather than left to race the first one's part files.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.errors import ConfigError

MANIFEST = "sweep.json"
LOCK = "sweep.lock"
FORMAT_VERSION = 1
Key = tuple[int, str]
_PART = re.compile(r"part-(\d+)\.parquet")
# Directories this process is writing to: a POSIX lock does not exclude its own holder.
_OPEN_HERE: set[Path] = set()
_OPEN_HERE_GUARD = threading.Lock()


class SweepWarning(UserWarning):
    """Something in a results directory was repaired (a part file set aside)."""


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
        self._lock_fd: int | None = None

    # Opening -----------------------------------------------------------------------------

    def open(self, resume: bool) -> set[Key]:
        """Prepare the directory; return the keys already stored (resume) or raise.

        Raises
        ------
        ConfigError
            If the directory holds another sweep, or this one without ``resume``, or
            another sweep is writing to it now, or it cannot be created or written.
        """
        if self.directory is None:
            return set()
        d = self.directory
        if d.exists() and not d.is_dir():
            raise ConfigError([f"{d}: not a directory"])
        try:
            d.mkdir(parents=True, exist_ok=True)
            self._lock()
            for tmp in d.glob("*.tmp"):  # a part or manifest being written when a run was killed
                tmp.unlink()
            return self._open_locked(resume)
        except OSError as exc:
            self.close()
            raise ConfigError([f"{d}: cannot write the results directory: {exc.strerror or exc}"]) from None
        except BaseException:
            self.close()
            raise

    def _open_locked(self, resume: bool) -> set[Key]:
        assert self.directory is not None
        d = self.directory
        old = self._read_manifest()
        parts = self._parts()
        if old is None and parts:
            raise ConfigError([f"{d}: holds part files but no {MANIFEST}; choose an empty directory"])
        if old is not None and old.get("sweep_id") != self.sweep_id:
            raise ConfigError([f"{d}: holds sweep {old.get('sweep_id')} ({old.get('name')}), not this spec's "
                               f"{self.sweep_id}; choose another output directory or remove it"])
        if parts and not resume:
            total = self.manifest.get("n_rows", "?")
            raise ConfigError([f"{d}: already holds {_row_count(parts)} of {total} rows of this sweep; pass "
                               "--resume (resume=True) to finish it, or remove the directory"])
        keys = self._readable_keys(parts)
        # Past every part name ever used, set-aside ones included, so none is reused.
        used = [int(m[1]) for p in d.iterdir() if (m := _PART.match(p.name))]
        self._seq = 1 + max(used, default=-1)
        tmp = d / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, d / MANIFEST)
        return keys

    def _lock(self) -> None:
        """Take the directory's writer lock, or raise naming the sweep that holds it."""
        assert self.directory is not None
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): one writer is then the user's to ensure
            return
        d = self.directory
        here = d.resolve()
        with _OPEN_HERE_GUARD:
            busy = here in _OPEN_HERE
            if not busy:
                fd = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    busy = True
                    holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                    os.close(fd)
                else:
                    _OPEN_HERE.add(here)
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    self._lock_fd = fd
            else:
                holder = str(os.getpid())
        if busy:
            raise ConfigError([f"{d}: another sweep (process {holder}) is writing to this directory; "
                               "wait for it to finish (a --resume then adds only what is missing), or "
                               "choose another directory"])

    def close(self) -> None:
        """Release the directory's writer lock (waiting rows are not written: flush first)."""
        if self._lock_fd is None:
            return
        assert self.directory is not None
        with _OPEN_HERE_GUARD:
            _OPEN_HERE.discard(self.directory.resolve())
            os.close(self._lock_fd)  # closing the file drops the lock
            self._lock_fd = None

    def _read_manifest(self) -> dict[str, Any] | None:
        assert self.directory is not None
        return read_manifest(self.directory) if (self.directory / MANIFEST).exists() else None

    def _parts(self) -> list[Path]:
        assert self.directory is not None
        return _part_files(self.directory)

    def _readable_keys(self, parts: list[Path]) -> set[Key]:
        """Keys of every part that reads back whole with this sweep's columns; the others
        are set aside (renamed ``.corrupt``, with a warning) so their points run again."""
        import pyarrow.parquet as pq

        schema = [(name, _pa_type(kind)) for name, kind in self.columns.items()]
        keys: set[Key] = set()
        for part in parts:
            try:
                table = pq.read_table(part)
                found = [(f.name, f.type) for f in table.schema]
                if found != schema:
                    raise ValueError("its columns are not this sweep's")
            except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors derive from these
                _set_aside(part, exc)
                continue
            keys.update(zip(table.column("point_id").to_pylist(), table.column("workload").to_pylist(),
                            strict=True))
        return keys

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
        try:
            pq.write_table(self._table(self._pending), tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:  # a full disk, a removed directory: resume evaluates the rows again
            lost = len(self._pending)
            raise ConfigError([f"{final}: cannot write a part file: {exc.strerror or exc}; {lost} rows "
                               "not stored (--resume evaluates them again)"]) from None
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
    tables = []
    for part in _part_files(d):
        try:
            tables.append(pq.read_table(part))
        except (OSError, ValueError) as exc:  # read-only here: left in place, skipped, said
            warnings.warn(f"{part}: unreadable part file skipped ({exc}); resume the sweep to set it "
                          "aside and evaluate its points again", SweepWarning, stacklevel=2)
    try:
        frame = pa.concat_tables(tables).to_pandas() if tables else None
    except (pa.ArrowInvalid, ValueError) as exc:
        raise ConfigError([f"{d}: part files of different sweeps or versions cannot be read together: "
                           f"{exc}"]) from None
    if frame is None:
        return pd.DataFrame(columns=["point_id", "workload", "error"])
    return _tidy(frame)


def _row_count(parts: list[Path]) -> str:
    """Rows stored in ``parts`` (from their footers), ``"N+"`` when some cannot be read."""
    import pyarrow.parquet as pq

    n, unreadable = 0, False
    for part in parts:
        try:
            n += pq.read_metadata(part).num_rows
        except (OSError, ValueError):
            unreadable = True
    return f"{n}+" if unreadable else str(n)


def _part_files(directory: Path) -> list[Path]:
    """The part files of a results directory (``part-<number>.parquet``), in order."""
    return sorted(p for p in directory.glob("part-*.parquet") if _PART.fullmatch(p.name))


def _set_aside(part: Path, exc: BaseException) -> None:
    """Rename an unreadable part out of the way (never deleting data) and warn."""
    target = part.with_name(part.name + ".corrupt")
    n = 1
    while target.exists():
        target = part.with_name(f"{part.name}.corrupt{n}")
        n += 1
    os.replace(part, target)
    warnings.warn(f"{part}: unreadable part file ({exc}); set aside as {target.name}, its points are "
                  "evaluated again", SweepWarning, stacklevel=3)


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
