"""hwsim's systolic closed forms against SCALE-Sim run live on small GEMMs.

Cycles within 1 % and every SRAM / DRAM count within 5 % (in practice they are equal,
bar SCALE-Sim reporting the last cycle's 0-based index as its cycle count). Skipped
when ``scalesim`` is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("scalesim")

import hwsim  # noqa: E402
from hwsim.arch import single_array  # noqa: E402
from hwsim.mapping.systolic import systolic_gemm_cycles, systolic_gemm_traffic  # noqa: E402
from tests.scalesim.scalesim_runner import run_scalesim  # noqa: E402

WS, OS, IS = "weight_stationary", "output_stationary", "input_stationary"
COUNTS = ("ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
          "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")
CYCLE_TOL, TRAFFIC_TOL = 0.01, 0.05

ARRAYS = [(8, 8), (16, 16), (32, 8)]
SHAPES = [(20, 30, 40), (100, 64, 50), (37, 90, 17)]
#: ifmap / filter / ofmap kB: everything fits; operands refetched (1 kB holds 500 words).
BUFFERS = [(64, 64, 64), (1, 2, 1)]
CASES = [
    pytest.param(rows, cols, df, *shape, buf,
                 id=f"{rows}x{cols}-{df[:1]}s-{'x'.join(map(str, shape))}-{buf[0]}k")
    for rows, cols in ARRAYS for df in (WS, OS, IS) for shape in SHAPES for buf in BUFFERS
] + [
    # Edge cases: one-word GEMM, a GEMM exactly one fold, skinny ones, odd buffer sizes
    # (a buffer swap inside an OS filter block, ifmap larger than the buffer).
    pytest.param(8, 8, WS, 1, 1, 1, (1, 1, 1), id="one-word"),
    pytest.param(16, 16, OS, 16, 16, 16, (1, 1, 1), id="one-fold"),
    pytest.param(8, 32, IS, 1, 97, 3, (1, 1, 1), id="skinny-is"),
    pytest.param(32, 8, OS, 120, 77, 99, (3, 1, 5), id="os-swaps"),
    pytest.param(16, 8, WS, 96, 120, 70, (5, 3, 2), id="ws-refetch"),
    pytest.param(8, 16, IS, 110, 40, 120, (2, 5, 3), id="is-refetch"),
]


def _close(ours: float, theirs: float, tol: float) -> bool:
    return abs(ours - theirs) <= tol * max(abs(theirs), 1)


@pytest.mark.parametrize(("rows", "cols", "dataflow", "m", "k", "n", "buffers"), CASES)
def test_closed_form_matches_scalesim(
    tmp_path: Path, rows: int, cols: int, dataflow: str, m: int, k: int, n: int,
    buffers: tuple[int, int, int],
) -> None:
    """Cycles (incl. per-fold fill, skew and drain) and SRAM / DRAM word counts of the
    closed forms agree with SCALE-Sim for this array, dataflow and buffer sizes."""
    ik, fk, ok = buffers
    ref = run_scalesim(rows, cols, dataflow, m, k, n, tmp_path, ik, fk, ok)
    cycles, _ = systolic_gemm_cycles(m, k, n, rows, cols, dataflow)
    assert ref["stall_cycles"] == 0
    # SCALE-Sim reports the 0-based index of the last cycle (SCALE-Sim issue #125).
    assert cycles in (ref["total_cycles"], ref["total_cycles"] + 1)
    assert _close(cycles, ref["total_cycles"], CYCLE_TOL) or cycles < 100
    traffic = systolic_gemm_traffic(m, k, n, rows, cols, dataflow, ik * 1024, fk * 1024, ok * 1024)
    for key in COUNTS:
        assert _close(getattr(traffic, key), ref[key], TRAFFIC_TOL), (key, getattr(traffic, key), ref[key])


@pytest.mark.parametrize(
    ("dataflow", "dtype", "m", "k", "n", "buffers"),
    [(WS, "int8", 100, 64, 50, (2, 1, 4)), (OS, "bf16", 64, 100, 70, (1, 2, 1)),
     (IS, "fp32", 90, 50, 80, (4, 1, 2))],
)
def test_simulate_single_array_matches_scalesim(
    tmp_path: Path, dataflow: str, dtype: str, m: int, k: int, n: int, buffers: tuple[int, int, int],
) -> None:
    """hwsim.simulate on single_array with SCALE-Sim's buffer sizes (in elements of the
    dtype) reports SCALE-Sim's cycles and SRAM / DRAM bytes (words x dtype bytes)."""
    elem = {"int8": 1, "bf16": 2, "fp32": 4}[dtype]
    ref = run_scalesim(16, 16, dataflow, m, k, n, tmp_path, *buffers)
    chip = single_array(rows=16, cols=16, dataflow=dataflow,
                        sram_bytes=tuple(kb * 1024 * elem for kb in buffers), dram_bytes_per_s=1e10)
    frame = hwsim.simulate(hwsim.ops.gemm(m, k, n, dtype=dtype), chip).to_frame()
    assert len(frame) == 1
    row = frame.iloc[0]
    assert _close(row["compute_cycles"], ref["total_cycles"], CYCLE_TOL)
    sram = ref["ifmap_sram_reads"] + ref["filter_sram_reads"] + ref["ofmap_sram_writes"]
    dram = ref["ifmap_dram_reads"] + ref["filter_dram_reads"] + ref["ofmap_dram_writes"]
    assert _close(row["sram_bytes"], sram * elem, TRAFFIC_TOL)
    assert _close(row["dram_bytes"], dram * elem, TRAFFIC_TOL)
