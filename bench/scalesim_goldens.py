"""Regenerate ``hwsim/validation/data/scalesim/goldens.csv``: SCALE-Sim's counts for GEMMs too large to
simulate in the test suite (run: ``.venv/bin/python bench/scalesim_goldens.py``).

Needs ``pip install scalesim`` (in the ``dev`` extras). Each case runs SCALE-Sim
(CALC interface mode, see ``tests/scalesim/scalesim_runner.py``) on one GEMM in a
fresh process; cases run ``--jobs`` at a time (default 2). The largest take a few
minutes and up to ~6 GB each; the whole set about 15 minutes on two cores.
``tests/scalesim/test_scalesim_goldens.py`` compares hwsim's closed forms with the file.

Options: ``--jobs N``, ``--out PATH``, ``--quick`` (only the cases under a second or so,
to check the script itself).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "hwsim" / "validation" / "data" / "scalesim" / "goldens.csv"

WS, OS, IS = "weight_stationary", "output_stationary", "input_stationary"
#: Scratchpad sizes in kB (SCALE-Sim words are one byte): ifmap, filter, ofmap.
LARGE = (4096, 4096, 4096)  # systolic-128's 12 MiB, everything fits
SMALL = (256, 256, 256)  # operands refetched from DRAM

#: (rows, cols, dataflow, m, k, n, buffers)
CASES: list[tuple[int, int, str, int, int, int, tuple[int, int, int]]] = [
    # Square GEMMs on a 128 x 128 array.
    *[(128, 128, df, 512, 512, 512, buf) for df in (WS, OS, IS) for buf in (LARGE, SMALL)],
    *[(128, 128, df, 1024, 1024, 1024, SMALL) for df in (WS, OS, IS)],
    (128, 128, WS, 1024, 1024, 1024, LARGE),
    (128, 128, WS, 2048, 2048, 2048, SMALL),
    # LLaMA-7B-like projections: decode GEMV, a 512-token prefill chunk, the MLP.
    *[(128, 128, df, 1, 4096, 4096, LARGE) for df in (WS, OS, IS)],
    (128, 128, WS, 128, 4096, 4096, LARGE),
    (128, 128, OS, 512, 4096, 4096, SMALL),
    (128, 128, IS, 512, 4096, 4096, SMALL),
    (128, 128, OS, 128, 11008, 4096, SMALL),
    (128, 128, IS, 128, 11008, 4096, SMALL),
    # Non-square arrays.
    (64, 256, WS, 1024, 1024, 1024, SMALL),
    (256, 64, OS, 1024, 1024, 1024, SMALL),
    (32, 128, IS, 600, 700, 500, (64, 64, 64)),
]

QUICK = [c for c in CASES if c[3] * c[4] * c[5] <= 512**3 and c[0] * c[1] == 128 * 128][:3]

COLUMNS = [
    "rows", "cols", "dataflow", "m", "k", "n", "ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb",
    "scalesim_total_cycles", "scalesim_stall_cycles", "ifmap_sram_reads", "filter_sram_reads",
    "ofmap_sram_writes", "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes",
    "scalesim_seconds", "scalesim_version",
    "role",  # hwsim validate: "check" (no parameter is fitted on a SCALE-Sim count)
]


def _run(case: tuple[int, int, str, int, int, int, tuple[int, int, int]]) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from tests.scalesim.scalesim_runner import run_scalesim, scalesim_version

    rows, cols, df, m, k, n, (ik, fk, ok) = case
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        r = run_scalesim(rows, cols, df, m, k, n, Path(tmp), ik, fk, ok)
    seconds = time.perf_counter() - t0
    return {
        "rows": rows, "cols": cols, "dataflow": df, "m": m, "k": k, "n": n,
        "ifmap_sram_kb": ik, "filter_sram_kb": fk, "ofmap_sram_kb": ok,
        "scalesim_total_cycles": r["total_cycles"], "scalesim_stall_cycles": r["stall_cycles"],
        **{key: r[key] for key in COLUMNS[11:17]},
        "scalesim_seconds": round(seconds, 1), "scalesim_version": scalesim_version(),
        "role": "check",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = QUICK if args.quick else CASES
    # Largest first, so the long ones overlap; a fresh process per case frees memory.
    order = sorted(range(len(cases)), key=lambda i: -cases[i][3] * cases[i][4] * cases[i][5])
    rows: dict[int, dict[str, object]] = {}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {i: pool.submit(_run, cases[i]) for i in order}
        for i in order:
            rows[i] = futures[i].result()
            r = rows[i]
            print(f"{r['rows']}x{r['cols']} {r['dataflow']:18s} {r['m']}x{r['k']}x{r['n']} "
                  f"buffers {r['ifmap_sram_kb']}/{r['filter_sram_kb']}/{r['ofmap_sram_kb']} kB: "
                  f"{r['scalesim_total_cycles']} cycles, {r['scalesim_seconds']} s", flush=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(len(cases)):
            writer.writerow(rows[i])
    print(f"wrote {len(cases)} cases to {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
