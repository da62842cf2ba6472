"""Cost of one distinct GEMM: the array path (``matmul_cost``) against the scalar
reference (``matmul_cost_scalar``), interleaved on the same shapes (run:
``PYTHONPATH=. python bench/bench_gemm_cost.py [arch ...]``).

The shapes are what serving asks for: the seven LLaMA-2 / BERT projection shapes at
14 token counts from 1 to 8192, and 100 random shapes (seed 0). Each path costs every
shape once per round (no memo), best of ``ROUNDS`` rounds, so a busy machine shows as
slower rounds, not a wrong ratio. Target (issue #14 support): 2-4x on h100-sxm.
Writes ``results/bench/results_gemm_cost.json`` (untracked); ``--record`` writes
``bench/results_gemm_cost.json`` instead.
"""

from __future__ import annotations

import json
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hwsim
from hwsim.cost.matmul import matmul_cost, matmul_cost_scalar
from hwsim.workload import MatMul

#: Where a run writes its results: untracked, as bench_simulate.py's (bench/README.md).
RUN_DIR = Path(__file__).resolve().parents[1] / "results" / "bench"

ROUNDS = 7
TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
#: (K, N) of LLaMA-2-7B's QKV, O, gate+up and down, LLaMA-2-70B's QKV, BERT-large's QKV and O.
LAYERS = ((4096, 12288), (4096, 4096), (4096, 22016), (11008, 4096), (8192, 10240), (1024, 3072),
          (4096, 1024))


def shapes() -> list[MatMul]:
    """The benchmark's GEMMs (fixed: same list every run)."""
    rng = random.Random(0)
    out = [MatMul(t, k, n) for t in TOKENS for k, n in LAYERS]
    out += [MatMul(rng.randint(1, 9000), rng.randint(16, 20000), rng.randint(16, 30000)) for _ in range(100)]
    return out


def per_gemm_s(arch: str) -> dict[str, float]:
    """Best seconds per GEMM of each path on ``arch``."""
    chip, ops = hwsim.load_arch(arch), shapes()
    paths: dict[str, Callable[..., object]] = {"scalar": matmul_cost_scalar, "arrays": matmul_cost}
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            for op in ops:
                fn(chip, op)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(ops))
    return best


def main() -> None:
    record = "--record" in sys.argv
    archs = [a for a in sys.argv[1:] if not a.startswith("--")] or ["h100-sxm", "a100-sxm"]
    rows = {}
    print(f"{'arch':12s} {'scalar_us':>10s} {'arrays_us':>10s} {'speedup':>8s}")
    for arch in archs:
        t = per_gemm_s(arch)
        rows[arch] = {"scalar_s_per_gemm": t["scalar"], "arrays_s_per_gemm": t["arrays"],
                      "speedup": t["scalar"] / t["arrays"], "n_gemms": len(shapes())}
        ratio = t["scalar"] / t["arrays"]
        print(f"{arch:12s} {t['scalar'] * 1e6:10.1f} {t['arrays'] * 1e6:10.1f} {ratio:7.2f}x")
    name = "results_gemm_cost.json"
    path = Path(__file__).resolve().parent / name if record else RUN_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                                "rounds": ROUNDS, "results": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
