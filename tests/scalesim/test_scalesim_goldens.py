"""hwsim's systolic closed forms against SCALE-Sim's counts for large GEMMs, stored in
``hwsim/validation/data/scalesim/goldens.csv`` (regenerate with
``bench/scalesim_goldens.py``; this test needs no SCALE-Sim).

Cycles within 1 %, every SRAM / DRAM count within 5 %, both directly and through
``hwsim.simulate`` on the matching ``single_array``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import hwsim
from hwsim.arch import single_array
from hwsim.mapping.systolic import systolic_gemm_cycles, systolic_gemm_traffic

GOLDENS = (Path(__file__).resolve().parents[2] / "hwsim" / "validation" / "data" / "scalesim"
           / "goldens.csv")
COUNTS = ("ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
          "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")
CYCLE_TOL, TRAFFIC_TOL = 0.01, 0.05


def _rows() -> list[dict[str, str]]:
    with GOLDENS.open() as f:
        return list(csv.DictReader(f))


ROWS = _rows()


def _id(row: dict[str, str]) -> str:
    return (f"{row['rows']}x{row['cols']}-{row['dataflow'][:1]}s-{row['m']}x{row['k']}x{row['n']}-"
            f"{row['ifmap_sram_kb']}k")


def _rel(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / max(abs(theirs), 1)


def test_goldens_cover_the_issue() -> None:
    """128x128 arrays, every dataflow, GEMMs from 512 to 4096 and 11008 wide, two
    buffer sizes, and non-square arrays; all from one SCALE-Sim version, stall-free."""
    assert len(ROWS) >= 20
    assert {r["dataflow"] for r in ROWS} == {"weight_stationary", "output_stationary", "input_stationary"}
    assert {(r["rows"], r["cols"]) for r in ROWS} >= {("128", "128"), ("64", "256"), ("256", "64")}
    assert max(int(r["k"]) for r in ROWS) >= 4096 and min(int(r["m"]) for r in ROWS) == 1
    assert len({r["ifmap_sram_kb"] for r in ROWS}) >= 2
    assert len({r["scalesim_version"] for r in ROWS}) == 1
    assert all(r["scalesim_stall_cycles"] == "0" for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_closed_form_matches_golden(row: dict[str, str]) -> None:
    """Closed-form cycles and word counts agree with SCALE-Sim's."""
    rows, cols, m, k, n = (int(row[c]) for c in ("rows", "cols", "m", "k", "n"))
    ik, fk, ok = (int(row[c]) * 1024 for c in ("ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb"))
    cycles, _ = systolic_gemm_cycles(m, k, n, rows, cols, row["dataflow"])
    assert _rel(cycles, int(row["scalesim_total_cycles"])) <= CYCLE_TOL
    traffic = systolic_gemm_traffic(m, k, n, rows, cols, row["dataflow"], ik, fk, ok)
    for key in COUNTS:
        ours = getattr(traffic, key)
        assert _rel(ours, int(row[key])) <= TRAFFIC_TOL, (key, ours, row[key])


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_simulate_matches_golden(row: dict[str, str]) -> None:
    """hwsim.simulate of the GEMM (int8: one-byte words, as SCALE-Sim's) on the
    single_array with the same buffers reports SCALE-Sim's cycles and bytes."""
    rows, cols, m, k, n = (int(row[c]) for c in ("rows", "cols", "m", "k", "n"))
    buffers = tuple(int(row[c]) * 1024 for c in ("ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb"))
    chip = single_array(rows=rows, cols=cols, dataflow=row["dataflow"], sram_bytes=buffers,
                        dram_bytes_per_s=1e11)
    frame = hwsim.simulate(hwsim.ops.gemm(m, k, n, dtype="int8"), chip).to_frame()
    sram = sum(int(row[c]) for c in COUNTS[:3])
    dram = sum(int(row[c]) for c in COUNTS[3:])
    assert _rel(frame["compute_cycles"].iloc[0], int(row["scalesim_total_cycles"])) <= CYCLE_TOL
    assert _rel(frame["sram_bytes"].iloc[0], sram) <= TRAFFIC_TOL
    assert _rel(frame["dram_bytes"].iloc[0], dram) <= TRAFFIC_TOL
