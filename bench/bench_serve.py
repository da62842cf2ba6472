"""Serving and request simulation speed (issue 14's targets; run: ``make bench``).

- 10,000 Poisson requests with chat-like lengths (the ``chat`` profile), LLaMA-3-70B
  on dgx-h100 with tp8 in fp8: target 5 s (at most 20 s) and under 1 GiB of RSS;
- one LLaMA-2-7B request, 2048 + 128 tokens, on h100-sxm: target 10 ms (at most 50 ms);
- one LLaMA-2-70B request, 2048 + 256 tokens, on h200-sxm: target 20 ms (at most 100 ms).

Each request case is timed from a cold start (new workload, new cost cache) and warm
(the same workload again, its costs cached), as ``hwsim.simulate`` users see both.
Prints a table; ``--record FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import hwsim
from hwsim.engine.serve.profiles import PROFILES


def _request_case(model: str, arch: str, prompt: int, new: int) -> dict[str, float]:
    chip = hwsim.load_arch(arch)
    t0 = time.perf_counter()
    workload = hwsim.load_workload(model, phase="request", prompt_len=prompt, new_tokens=new)
    cache = hwsim.CostCache(chip)
    hwsim.simulate(workload, chip, cache=cache)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        hwsim.simulate(workload, chip, cache=cache)
        warm.append(time.perf_counter() - t0)
    return {"cold_s": cold, "warm_s": sorted(warm)[len(warm) // 2]}


def _serving_case(n: int, rate: float) -> dict[str, float]:
    requests = hwsim.Requests.poisson(n, rate, seed=0, **PROFILES["chat"].lengths()).with_max_len(8192)
    t0 = time.perf_counter()
    result = hwsim.serve(requests, "dgx-h100", model="llama3-70b", plan=hwsim.Plan(tp=8), dtype="fp8")
    wall = time.perf_counter() - t0
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    m = result.metrics
    return {"wall_s": wall, "max_rss_gib": rss_gib, "iterations": float(len(result.iterations)),
            "us_per_iteration": wall / len(result.iterations) * 1e6,
            "output_tokens_per_s": m["output_tokens_per_s"], "ttft_p99_s": m["ttft_p99_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, help="write the results to this JSON file")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=20.0, help="arrival rate of the serving case, 1/s")
    args = parser.parse_args()
    rows = {
        "llama2_7b_request_2048_128_h100": _request_case("llama2-7b", "h100-sxm", 2048, 128),
        "llama2_70b_request_2048_256_h200": _request_case("llama2-70b", "h200-sxm", 2048, 256),
    }
    for name, row in rows.items():
        print(f"{name:36s} cold {row['cold_s'] * 1e3:8.1f} ms   warm {row['warm_s'] * 1e3:8.1f} ms")
    serving = _serving_case(args.requests, args.rate)
    print(f"{args.requests} chat requests at {args.rate:g}/s, llama3-70b fp8 tp8 on dgx-h100: "
          f"{serving['wall_s']:.2f} s, {serving['iterations']:.0f} iterations "
          f"({serving['us_per_iteration']:.0f} us each), max RSS {serving['max_rss_gib']:.2f} GiB, "
          f"{serving['output_tokens_per_s']:.0f} output tokens/s")
    rows["serve_10k_chat_llama3_70b_fp8_tp8_dgx_h100"] = serving
    if args.record:
        out = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
               "hwsim": hwsim.__version__, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
               "cases": rows}
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
