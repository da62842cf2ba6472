"""Executors: where sweep chunks run, behind one interface.

Every executor takes a picklable function and a list of chunks and yields each chunk's
rows as soon as it finishes (in any order); the sweep sorts rows by point, so serial,
process-pool and Dask runs give identical results.

- :class:`SerialExecutor`: in this process, in order (debugging, tiny sweeps).
- :class:`ProcessExecutor`: a local process pool (the default), ``workers`` processes.
- :class:`DaskExecutor`: a Dask distributed cluster, ``dask.distributed.Client(address)``
  (or a client you already hold).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hwsim.errors import ConfigError

ChunkFn = Callable[[dict[str, Any], list[Any]], list[dict[str, Any]]]
EXECUTORS = ("serial", "process", "dask")


class Executor:
    """Runs ``fn(payload, chunk)`` for each chunk; yields each result as it finishes."""

    name = "executor"
    workers = 1

    def run(self, fn: ChunkFn, payload: dict[str, Any], chunks: Sequence[list[Any]]) -> Iterator[list[dict]]:
        """Yield ``fn(payload, chunk)`` for every chunk, in completion order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the executor's processes or connections."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Evaluate chunks one after another in this process."""

    name = "serial"

    def run(self, fn: ChunkFn, payload: dict[str, Any], chunks: Sequence[list[Any]]) -> Iterator[list[dict]]:
        for chunk in chunks:
            yield fn(payload, chunk)


def _freeze_inherited() -> None:
    """Worker start-up: keep the objects a forked worker inherits (modules, the parent's
    data) out of the cyclic collector, which would otherwise walk them, and touching
    them copy every page the parent shares with the worker."""
    import gc

    gc.freeze()


class ProcessExecutor(Executor):
    """A local pool of ``workers`` processes (default: the CPU count)."""

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers or os.cpu_count() or 1
        self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_freeze_inherited)

    def run(self, fn: ChunkFn, payload: dict[str, Any], chunks: Sequence[list[Any]]) -> Iterator[list[dict]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        # Keep a bounded number of chunks in flight so a huge sweep does not queue
        # everything at once and a cancelled one stops quickly.
        todo = iter(chunks)
        pending = set()
        for chunk in todo:
            pending.add(self._pool.submit(fn, payload, chunk))
            if len(pending) >= 4 * self.workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.add(self._pool.submit(fn, payload, nxt))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Chunks run on a Dask distributed cluster.

    Parameters
    ----------
    address : str, optional
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    client : dask.distributed.Client, optional
        A client already connected (it is left open by :meth:`close`).
    """

    name = "dask"

    def __init__(self, address: str | None = None, client: Any = None) -> None:
        from dask.distributed import Client

        if client is None and address is None:
            raise ConfigError(["--scheduler: the dask executor needs a scheduler address "
                               "(tcp://HOST:8786) or a Client"])
        self._owned = client is None
        try:
            self.client = client if client is not None else Client(address, timeout="20s")
        except OSError as exc:
            raise ConfigError([f"--scheduler: cannot reach the Dask scheduler at {address}: {exc}"]) from None
        self.workers = max(1, sum(self.client.nthreads().values()))

    def run(self, fn: ChunkFn, payload: dict[str, Any], chunks: Sequence[list[Any]]) -> Iterator[list[dict]]:
        from dask.distributed import as_completed

        if not chunks:
            return
        # A list of one, so the dict travels (once, to every worker) as one object.
        [spec] = self.client.scatter([payload], broadcast=True)
        futures = self.client.map(fn, [spec] * len(chunks), list(chunks), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        if self._owned:
            self.client.close()


def make_executor(name: str = "process", workers: int | None = None, scheduler: str | None = None,
                  client: Any = None) -> Executor:
    """An executor by name: ``serial``, ``process`` (default) or ``dask``.

    Raises
    ------
    ConfigError
        For an unknown name or conflicting options (a scheduler for a local executor).
    """
    if name not in EXECUTORS:
        raise ConfigError([f"--executor: unknown executor {name!r} (known: {', '.join(EXECUTORS)})"])
    if name != "dask" and (scheduler or client is not None):
        raise ConfigError([f"--scheduler: a scheduler is for the dask executor, not {name!r}"])
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    return DaskExecutor(scheduler, client)
