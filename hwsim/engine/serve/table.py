"""The state of every request of a serving run, as numpy arrays indexed by request id.

Times are seconds of simulated time; a time not yet reached is ``-1``. Token events
(one per output token: which request, when) are appended per iteration and joined once
at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class RequestTable:
    """Per-request state: lengths, progress, timestamps and counters.

    Parameters
    ----------
    arrival_s, prompt_len, output_len : numpy.ndarray
    prefix_id, prefix_len : numpy.ndarray, optional
        Shared-prefix id (-1: none) and its length in tokens.
    on_finish : callable, optional
        Called with the number of requests that have just finished, whenever any do
        (a progress report; it must not touch the run).
    """

    def __init__(self, arrival_s: np.ndarray, prompt_len: np.ndarray, output_len: np.ndarray,
                 prefix_id: np.ndarray | None = None, prefix_len: np.ndarray | None = None,
                 on_finish: Callable[[int], None] | None = None) -> None:
        n = len(arrival_s)
        self.n = n
        self.arrival_s = np.asarray(arrival_s, dtype=np.float64)
        self.prompt = np.asarray(prompt_len, dtype=np.int64)
        self.output = np.asarray(output_len, dtype=np.int64)
        self.prefix_id = np.full(n, -1, np.int64) if prefix_id is None else np.asarray(prefix_id, np.int64)
        self.prefix_len = np.zeros(n, np.int64) if prefix_len is None else np.asarray(prefix_len, np.int64)
        self.computed = np.zeros(n, dtype=np.int64)
        self.generated = np.zeros(n, dtype=np.int64)
        self.first_scheduled_s = np.full(n, -1.0)
        self.first_token_s = np.full(n, -1.0)
        self.finish_s = np.full(n, -1.0)
        self.n_preemptions = np.zeros(n, dtype=np.int64)
        self.prefix_hits = np.zeros(n, dtype=np.int64)
        self.swapped_tokens = np.zeros(n, dtype=np.int64)
        self.replica = np.full(n, -1, dtype=np.int64)
        self.now_s = 0.0
        self.on_finish = on_finish
        self._token_ids: list[np.ndarray] = []
        self._token_times: list[np.ndarray] = []

    def known(self, ids: np.ndarray | int) -> np.ndarray | int:
        """Tokens of each request that are known (prompt + generated so far)."""
        return self.prompt[ids] + self.generated[ids]

    def admitted(self, rid: int) -> None:
        if self.first_scheduled_s[rid] < 0:
            self.first_scheduled_s[rid] = self.now_s

    def preempted(self, rid: int) -> None:
        self.n_preemptions[rid] += 1

    def sample(self, ids: np.ndarray, time_s: float, counts: np.ndarray | None = None) -> np.ndarray:
        """Requests ``ids`` produced one token each (``counts`` tokens: a speculative
        step) at ``time_s``; return those finished."""
        if ids.size == 0:
            return ids
        self.generated[ids] += 1 if counts is None else counts
        first = ids[self.first_token_s[ids] < 0]
        self.first_token_s[first] = time_s
        events = ids.copy() if counts is None else np.repeat(ids, counts)
        self._token_ids.append(events)
        self._token_times.append(np.full(events.size, time_s))
        done = ids[self.generated[ids] >= self.output[ids]]
        self.finish_s[done] = time_s
        if done.size and self.on_finish is not None:
            self.on_finish(int(done.size))
        return done

    def token_events(self) -> tuple[np.ndarray, np.ndarray]:
        """Every output token: its request and the time it was produced (s), in order."""
        if not self._token_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.concatenate(self._token_ids), np.concatenate(self._token_times)
