"""Sweep points per second for the case issue #5 names (run: ``python bench/bench_sweep.py``).

- ``workloads/sweeps/tpu-like.yaml``: 1,000 variants of ``systolic-128`` (array rows and
  cols, SRAM capacity, DRAM bandwidth) on one LLaMA-2-7B decode step, with the area
  model and constraints, on the default process executor (one worker per core) and
  serially for comparison. Each run starts cold: fresh worker processes, empty caches.

Target: the 1,000 points finish in under 60 s on a 2-core machine. Writes
``results/bench/results_sweep.json`` (untracked; same layout as ``results.json``);
``--record`` writes the recorded ``bench/results_sweep.json`` instead.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import hwsim
from hwsim.sweep import evaluate, load_spec, sweep

SPEC = Path(__file__).resolve().parents[1] / "workloads" / "sweeps" / "tpu-like.yaml"


#: Where a run writes its results: an untracked folder (``results/`` is git-ignored), so
#: ``make bench`` leaves the working tree clean; ``--record`` updates the recorded file
#: beside this script instead (commit it with the machine it was taken on).
RUN_DIR = Path(__file__).resolve().parents[1] / "results" / "bench"


def output_path(name: str, record: bool) -> Path:
    """``bench/<name>`` with ``record``, else ``results/bench/<name>`` (untracked)."""
    return Path(__file__).resolve().parent / name if record else RUN_DIR / name


def _run(executor: str, runs: int = 3) -> dict[str, float | int]:
    """Median wall time of ``runs`` cold sweeps of the spec on ``executor``."""
    spec = load_spec(SPEC)
    times, n_rows, n_feasible = [], 0, 0
    for _ in range(runs):
        evaluate._CONTEXTS.clear()  # cold: no memoised chips, costs or workloads
        t0 = time.perf_counter()
        frame = sweep(spec, executor=executor).to_frame()
        times.append(time.perf_counter() - t0)
        n_rows, n_feasible = len(frame), int(frame["error"].isna().sum())
    times.sort()
    sec = times[len(times) // 2]
    return {"s_per_sweep": sec, "points_per_s": n_rows / sec, "n_points": n_rows, "n_feasible": n_feasible,
            "runs": runs}


def main() -> None:
    cases = {"tpu_like_1000_llama2_7b_decode_process": "process",
             "tpu_like_1000_llama2_7b_decode_serial": "serial"}
    rows = {}
    print(f"{'case':42s} {'s_per_sweep':>12s} {'points_per_s':>13s} {'points':>7s} {'runs':>5s}")
    for name, executor in cases.items():
        row = _run(executor)
        rows[name] = row
        print(f"{name:42s} {row['s_per_sweep']:12.3f} {row['points_per_s']:13.1f} {row['n_points']:7d} "
              f"{row['runs']:5d}")
    out = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
           "hwsim": hwsim.__version__, "cpus": os.cpu_count(), "cases": rows}
    path = output_path("results_sweep.json", record="--record" in sys.argv[1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
