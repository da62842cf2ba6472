"""Run SCALE-Sim (``pip install scalesim``) on one GEMM and read back its reports.

Shared by the live tests in this folder and by ``bench/scalesim_goldens.py``. SCALE-Sim
runs in its default "CALC" (estimate-bandwidth) interface mode, as in its
``configs/scale.cfg``: stall-free, DRAM traffic counted from the buffers' contents.
Its word is one byte (``word_size = 1``), so its kB sizes are 1024 words each.
"""

from __future__ import annotations

import contextlib
import csv
import io
from importlib.metadata import version
from pathlib import Path
from typing import Any

DATAFLOW_CODE = {"weight_stationary": "ws", "output_stationary": "os", "input_stationary": "is"}

_CONFIG = """\
[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {ifmap_kb}
FilterSramSzkB: {filter_kb}
OfmapSramSzkB: {ofmap_kb}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {df}
MemoryBanks: 1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: {mode}
UseRamulatorTrace: False
"""


def _patch_numpy_scalar_conversion() -> None:
    """SCALE-Sim 3.0.0 computes ``int(max(list_of_1_element_arrays))``, which NumPy >= 2.4
    rejects (scalesim-project/SCALE-Sim issue #160; fix proposed in PR #162). Give the two
    affected modules a one-argument ``max`` that reduces with NumPy (same value, a scalar);
    calls with several arguments go to the builtin unchanged."""
    import builtins

    import numpy as np
    from scalesim.memory import double_buffered_scratchpad_mem, read_buffer

    def _max(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs:
            return np.max(np.asarray(args[0]))
        return builtins.max(*args, **kwargs)

    for module in (double_buffered_scratchpad_mem, read_buffer):
        module.max = _max  # type: ignore[attr-defined]


def scalesim_version() -> str:
    return version("scalesim")


def _row(path: Path) -> dict[str, str]:
    with path.open() as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    values = [v.strip() for v in rows[1]]
    return dict(zip(header, values, strict=False))


def run_scalesim(
    rows: int, cols: int, dataflow: str, m: int, k: int, n: int, workdir: Path,
    ifmap_kb: int = 64, filter_kb: int = 64, ofmap_kb: int = 64, mode: str = "CALC",
) -> dict[str, Any]:
    """Simulate the (m x k) @ (k x n) GEMM on a rows x cols array; return SCALE-Sim's counts.

    Keys: ``total_cycles`` (COMPUTE_REPORT "Total Cycles"), ``stall_cycles``,
    ``compute_cycles`` (total minus stalls), ``ifmap_sram_reads``,
    ``filter_sram_reads``, ``ofmap_sram_writes``, ``ifmap_dram_reads``,
    ``filter_dram_reads``, ``ofmap_dram_writes`` (DETAILED_ACCESS_REPORT, in words).
    """
    from scalesim.scale_sim import scalesim

    _patch_numpy_scalar_conversion()
    df = DATAFLOW_CODE.get(dataflow, dataflow)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_name = f"r{rows}x{cols}_{df}_{m}_{k}_{n}_{ifmap_kb}_{filter_kb}_{ofmap_kb}"
    cfg = workdir / f"{run_name}.cfg"
    cfg.write_text(_CONFIG.format(run_name=run_name, rows=rows, cols=cols, ifmap_kb=ifmap_kb,
                                  filter_kb=filter_kb, ofmap_kb=ofmap_kb, df=df, mode=mode))
    topo = workdir / f"{run_name}_topo.csv"
    # SCALE-Sim's GEMM topology columns: name, M, N, K (ifmap M x K, filter K x N).
    topo.write_text(f"Layer, M, N, K,\ngemm, {m}, {n}, {k},\n")
    layout = workdir / f"{run_name}_layout.csv"
    layout.write_text("Layer name,\n")
    sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                   layout=str(layout), input_type_gemm=True)
    with contextlib.redirect_stdout(io.StringIO()):
        sim.run_scale(top_path=str(workdir))
    report = workdir / run_name
    comp = _row(report / "COMPUTE_REPORT.csv")
    detail = _row(report / "DETAILED_ACCESS_REPORT.csv")
    total = int(float(comp["Total Cycles"]))
    stall = int(float(comp["Stall Cycles"]))
    return {
        "total_cycles": total,
        "stall_cycles": stall,
        "compute_cycles": total - stall,
        "overall_cycles": int(float(comp["Total Cycles (incl. prefetch)"])),
        "ifmap_sram_reads": int(float(detail["SRAM IFMAP Reads"])),
        "filter_sram_reads": int(float(detail["SRAM Filter Reads"])),
        "ofmap_sram_writes": int(float(detail["SRAM OFMAP Writes"])),
        "ifmap_dram_reads": int(float(detail["DRAM IFMAP Reads"])),
        "filter_dram_reads": int(float(detail["DRAM Filter Reads"])),
        "ofmap_dram_writes": int(float(detail["DRAM OFMAP Writes"])),
    }
