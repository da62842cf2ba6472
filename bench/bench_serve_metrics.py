"""Seconds to summarise a serving run (issue 14, metrics): 10,000 Poisson requests of
300 output tokens each (3 M token events), and building the chat-profile request stream.

Target: the summary in well under a second on one core. Writes
``bench/results_serve_metrics.json`` beside this file.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import hwsim
from hwsim.engine.serve.metrics import SLO, EngineRecord, summarize
from hwsim.engine.serve.requests import PROFILES, Requests

N_REQUESTS, N_TOKENS = 10_000, 300


def _time(fn: Callable[[], object], runs: int = 5) -> float:
    """Median seconds per call over ``runs`` calls."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _trace() -> tuple[Requests, np.ndarray, np.ndarray]:
    """Each request decodes one token every 20 ms after a 100 ms first token; the token
    events of all requests interleaved in time order, as an engine would record them."""
    r = Requests.poisson(N_REQUESTS, 50.0, 512, N_TOKENS, seed=0)
    owners = np.repeat(np.arange(N_REQUESTS), N_TOKENS)
    times = r.arrival_s[owners] + 0.1 + 0.02 * np.tile(np.arange(N_TOKENS), N_REQUESTS)
    order = np.argsort(times, kind="stable")
    return r, owners[order], times[order]


def main() -> None:
    r, owners, times = _trace()
    slo = SLO(ttft_s=0.2, tpot_s=0.05)

    def summary() -> object:
        record = EngineRecord.from_tokens(r.arrival_s, np.zeros(N_REQUESTS, int), owners, times)
        return summarize(r, record, slo)

    cases = {
        "summarize_10k_requests_300_tokens": summary,
        "poisson_chat_profile_10k_requests": lambda: Requests.poisson(
            N_REQUESTS, 50.0, **PROFILES["chat"].lengths()),
    }
    rows = {}
    for name, fn in cases.items():
        sec = _time(fn)
        rows[name] = {"s_per_call": sec}
        print(f"{name:40s} {sec:9.4f} s")
    out = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
           "hwsim": hwsim.__version__, "cases": rows}
    (Path(__file__).parent / "results_serve_metrics.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
