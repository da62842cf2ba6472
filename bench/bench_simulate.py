"""Simulations per second for the cases issue #2 names (run: ``make bench``).

- one GEMM (8192 x 8192 x 8192 bf16 on h100-sxm, cost cache cleared each time);
- one LLaMA-2-70B decode step (80 layers, batch 1, 2048-token cache) on h200-sxm;
- a full LLaMA-2-70B request (bf16 on h200-sxm, 2048-token prompt, 256 new tokens).

Target: the full request simulates in under 1 s on one core. Writes
``results/bench/results.json`` (untracked); ``--record`` writes the recorded
``bench/results.json`` beside this file instead.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hwsim

#: Where a run writes its results: an untracked folder (``results/`` is git-ignored), so
#: ``make bench`` leaves the working tree clean; ``--record`` updates the recorded file
#: beside this script instead (commit it with the machine it was taken on).
RUN_DIR = Path(__file__).resolve().parents[1] / "results" / "bench"


def output_path(name: str, record: bool) -> Path:
    """``bench/<name>`` with ``record``, else ``results/bench/<name>`` (untracked)."""
    return Path(__file__).resolve().parent / name if record else RUN_DIR / name


def _time(fn: Callable[[], object], min_s: float = 2.0, max_runs: int = 200) -> tuple[float, int]:
    """Median seconds per call over repeated calls (at least ``min_s`` of work or 3 runs)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (time.perf_counter() - start < min_s or len(times) < 3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], len(times)


def main() -> None:
    h100, h200 = hwsim.load_arch("h100-sxm"), hwsim.load_arch("h200-sxm")
    gemm = hwsim.ops.gemm(m=8192, k=8192, n=8192, dtype="bf16")
    decode = hwsim.load_workload("llama2-70b", phase="decode", batch=1, context_len=2048)
    cases: dict[str, Callable[[], object]] = {
        "gemm_8192_h100": lambda: hwsim.simulate(gemm, h100),
        "llama2_70b_decode_step_h200": lambda: hwsim.simulate(decode, h200),
        "llama2_70b_request_2048_256_h200": lambda: hwsim.simulate(
            hwsim.load_workload("llama2-70b", phase="request", batch=1, prompt_len=2048,
                                new_tokens=256), h200),
    }
    rows = {}
    print(f"{'case':36s} {'s_per_sim':>12s} {'sims_per_s':>12s} {'runs':>5s}")
    for name, fn in cases.items():
        sec, runs = _time(fn)
        rows[name] = {"s_per_sim": sec, "sims_per_s": 1.0 / sec, "runs": runs}
        print(f"{name:36s} {sec:12.5f} {1.0 / sec:12.1f} {runs:5d}")
    out = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
           "hwsim": hwsim.__version__, "cases": rows}
    path = output_path("results.json", record="--record" in sys.argv[1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
