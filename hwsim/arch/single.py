"""One systolic array with a scratchpad and DRAM: the machine SCALE-Sim simulates.

``single_array(rows=32, cols=32, dataflow="output_stationary", sram_bytes=(64 << 10,) * 3,
dram_bytes_per_s=10e9)`` is the counterpart of a SCALE-Sim config with a 32 x 32 OS
array and 64 kB ifmap / filter / ofmap SRAMs: on it hwsim's GEMM cycles and SRAM / DRAM
bytes are SCALE-Sim's (``hwsim.mapping.systolic``; SCALE-Sim's words are one byte, so
give int8 GEMMs, or scale the sizes by the dtype's width).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hwsim.arch.load import arch_from_dict
from hwsim.arch.model import Chip, Dataflow
from hwsim.dtypes import PLAIN_DTYPES
from hwsim.errors import ConfigError


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_SHORT = {"weight_stationary": "ws", "output_stationary": "os", "input_stationary": "is"}


def single_array(
    rows: int = 128,
    cols: int = 128,
    dataflow: Dataflow = "weight_stationary",
    sram_bytes: float | Sequence[float] = 3 * 2**20,
    dram_bytes_per_s: float = 1e11,
    clock_hz: float = 1e9,
    *,
    sram_bytes_per_s: float | None = None,
    dram_bytes: float = 2.0**34,
    double_buffered: bool = False,
    name: str | None = None,
) -> Chip:
    """A chip with one ``rows`` x ``cols`` systolic array, one shared ``sram`` level
    and one ``dram`` level.

    Parameters
    ----------
    sram_bytes
        Total scratchpad bytes, split evenly over the ifmap (A), filter (B) and ofmap
        (C) buffers, or three sizes ``(ifmap, filter, ofmap)``.
    dram_bytes_per_s
        DRAM bandwidth.
    sram_bytes_per_s
        Scratchpad bandwidth; by default wide enough never to stall the array (four
        bytes per word of a row, a column and an output column each cycle), as
        SCALE-Sim assumes.
    double_buffered
        Stage the next fold's stationary operand while the current one streams (TPU
        style); SCALE-Sim does not (False).

    Every dtype runs at one MAC per PE per cycle; energies, idle power and area are
    zero (set them with :func:`hwsim.arch.with_overrides`).
    """
    split: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    if isinstance(sram_bytes, Sequence) and not isinstance(sram_bytes, str):
        sizes = tuple(sram_bytes)
        if len(sizes) != 3 or not all(_is_number(b) and 0 < b < math.inf for b in sizes):
            raise ConfigError([f"single_array: sram_bytes: expected one size or three positive sizes, "
                               f"got {sram_bytes!r}"])
        capacity: object = sum(sizes)
        split = (sizes[0] / sum(sizes), sizes[1] / sum(sizes), sizes[2] / sum(sizes))
    else:
        capacity = sram_bytes  # validated below
    # Derived sizes only from numbers; anything else is reported by validation below.
    numeric = all(_is_number(v) for v in (rows, cols, clock_hz))
    feed = sram_bytes_per_s or (4.0 * (rows + 2 * cols) * clock_hz if numeric else None)
    # (a placeholder rate where rows or cols is invalid, so only that field is reported)
    flops = 2.0 * rows * cols if numeric and rows > 0 and cols > 0 else 2.0
    # Validated as a mapping, so a bad argument is a ConfigError naming its field's path.
    return arch_from_dict({
        "name": name or f"single-{rows}x{cols}-{_SHORT.get(dataflow, dataflow)}",
        "description": f"One {rows}x{cols} {str(dataflow).replace('_', ' ')} systolic array "
                       "(SCALE-Sim style)",
        "compute_units": {
            "kind": "systolic_array", "rows": rows, "cols": cols, "count": 1, "dataflow": dataflow,
            "clock_hz": clock_hz, "flops_per_cycle": dict.fromkeys(PLAIN_DTYPES, flops),
            "stationary_double_buffered": double_buffered,
        },
        "vector_units": {"count": 1, "flops_per_cycle": cols, "clock_hz": clock_hz},
        "memory": {
            "sram": {"capacity_bytes": capacity, "bandwidth_bytes_per_s": feed, "buffer_split": split},
            "dram": {"capacity_bytes": dram_bytes, "bandwidth_bytes_per_s": dram_bytes_per_s},
        },
        "idle_power_w": 0.0,
    }, "single_array")
