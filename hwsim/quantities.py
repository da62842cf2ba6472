"""Strict, finite, physically bounded number types for pydantic schemas (a shared leaf module).

Each type refuses what cannot be the quantity it names: booleans (YAML reads ``yes`` as
``True``, which Python would count as 1), strings (``"2"``), infinities and NaN, and
values outside a *plausible* range. The ranges are generous on purpose: they admit every
shipped preset and any real or imagined design (a wafer's 2e16 B/s of SRAM bandwidth, a
1 kHz teaching array, a 1 MW board), and exist to stop what would overflow or underflow
the closed forms (a 1e-300 B/s memory takes 1e300 s; a 1e308 one makes energy NaN).

Use them as field annotations::

    class MemoryLevel(BaseModel):
        bandwidth_bytes_per_s: BandwidthBytesPerS
        read_energy_pj_per_byte: EnergyPj = 0.0

and build others as ``Annotated[float, real_in(lo, hi, "unit")]`` or
``Annotated[int, int_in(lo, hi)]``. Messages name the range and the unit, so a refused
value says why (``1e-300 is outside the plausible range [1000, 1e+18] B/s``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator


def _plain_number(value: Any) -> Any:
    """Refuse booleans, strings, infinities and NaN; unwrap NumPy scalars (sweeps may
    pass them). Other types are left for pydantic to refuse."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    if isinstance(value, str):
        raise ValueError(f"expected a number, got the string {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


def _check_range(value: float, lo: float, hi: float, unit: str, positive: bool, hard: bool) -> None:
    suffix = f" {unit}" if unit else ""
    if positive and not value > 0:
        raise ValueError(f"must be greater than 0, got {value:g}")
    if not positive and lo >= 0 and value < 0:
        raise ValueError(f"must be greater than or equal to 0, got {value:g}")
    if hard and value > hi:
        raise ValueError(f"must be less than or equal to {hi:g}, got {value:g}")
    if not lo <= value <= hi:
        raise ValueError(f"{value:g} is outside the plausible range [{lo:g}, {hi:g}]{suffix}")


def real_in(lo: float, hi: float, unit: str = "", *, positive: bool = False, hard: bool = False) -> Any:
    """A ``BeforeValidator`` for a strict finite real in ``[lo, hi]``.

    ``positive`` first states ``> 0`` (so a negative value reads "must be greater than
    0"); ``hard`` marks ``hi`` as a definition (a fraction's 1) rather than a plausibility
    bound, and says so.
    """
    def check(value: Any) -> Any:
        kind = type(value)
        if kind is float:  # the common case, checked inline (a sweep validates many chips)
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value}")
        elif kind is not int:
            value = _plain_number(value)
            if not isinstance(value, int | float):
                return value
        _check_range(value, lo, hi, unit, positive, hard)
        return value

    return BeforeValidator(check)


def int_in(lo: int, hi: int, unit: str = "") -> Any:
    """A ``BeforeValidator`` for a strict integer in ``[lo, hi]`` (an integral float such
    as ``1.28e+2`` reads as 128; ``2.5`` is refused)."""
    def check(value: Any) -> Any:
        if type(value) is not int:
            value = _plain_number(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value:g}")
            value = int(value)
        if isinstance(value, int):
            _check_range(value, lo, hi, unit, positive=lo >= 1, hard=False)
        return value

    return BeforeValidator(check)


def exact_int(value: Any) -> Any:
    """A ``BeforeValidator`` function for integer ``Literal`` fields (``version: 1``,
    ``zero_stage``): only an ``int`` passes, so ``true``, ``1.0`` or ``"1"`` do not read as 1."""
    value = _plain_number(value)
    if type(value) is not int:
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def strict_bool(value: Any) -> Any:
    """A ``BeforeValidator`` function for flags: only ``true`` or ``false`` (not ``1`` or ``"yes"``)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


# The quantities of hwsim's schemas, with the range each admits and why -------------------

#: Clock of a compute or vector unit: 1 kHz (a slow teaching array) to 1 THz (beyond RSFQ
#: superconducting logic's ~100 GHz).
FrequencyHz = Annotated[float, real_in(1e3, 1e12, "Hz", positive=True)]
#: Bandwidth of a memory level, link or host path: 1 kB/s to 1 EB/s (50x a wafer's SRAM,
#: 2e16 B/s).
BandwidthBytesPerS = Annotated[float, real_in(1e3, 1e18, "B/s", positive=True)]
#: Capacity of a buffer, memory or store, or a byte size: 1 B to 1 EB (a MemoryX is 1.2 PB).
CapacityBytes = Annotated[float, real_in(1.0, 1e18, "B", positive=True)]
#: Energy of one action (a MAC, a vector op, a byte read or written, a bit over a hop):
#: 0 to 1 uJ (real ones are 0.01-100 pJ).
EnergyPj = Annotated[float, real_in(0.0, 1e6, "pJ")]
#: A stored energy (the power controller's burst bucket): 0 to 1 MJ (a GPU's is ~10 J).
EnergyJ = Annotated[float, real_in(0.0, 1e6, "J")]
#: A fixed time (access or hop latency, kernel overhead, dispatch, ramp): 0 to 1 s.
LatencyS = Annotated[float, real_in(0.0, 1.0, "s")]
#: Static power of a chip: 0 to 1 MW (a wafer-scale system draws ~20 kW).
PowerW = Annotated[float, real_in(0.0, 1e6, "W")]
#: A power limit: 1 mW (an embedded NPU) to 1 MW; near 0 it would stretch time without bound.
PowerLimitW = Annotated[float, real_in(1e-3, 1e6, "W", positive=True)]
#: Chip area: 0 to 1e6 mm2 (twenty wafers).
AreaMm2 = Annotated[float, real_in(0.0, 1e6, "mm2")]
#: A share of a peak that is actually sustained: (0, 1].
Fraction = Annotated[float, real_in(0.0, 1.0, positive=True, hard=True)]
#: A share that may be 0 (e.g. of work hidden under other work): [0, 1].
ZeroToOne = Annotated[float, real_in(0.0, 1.0, hard=True)]
#: Operations per cycle of one unit (FLOP, vector lanes, exponentials): 1e-3 (a slow fp64
#: path) to 1e9 (a 22,000 x 22,000 array).
PerCycle = Annotated[float, real_in(1e-3, 1e9, "per cycle", positive=True)]
#: A dimensionless multiplier (sparsity speedup, memory passes of a kernel, ops per element):
#: 1e-3 to 1e6.
Multiplier = Annotated[float, real_in(1e-3, 1e6, positive=True)]
#: Bits of metadata per stored non-zero: 0 to 1,000.
BitsPerElement = Annotated[float, real_in(0.0, 1e3, "bit")]

#: Identical units on a chip (SMs, cores, arrays): 1 to 1e9 (a wafer has ~1e6 cores).
UnitCount = Annotated[int, int_in(1, 10**9)]
#: Rows or columns of an array, or an MMA granule: 1 to 1e6.
ArrayDim = Annotated[int, int_in(1, 10**6)]
#: A small count (kernels per op, links per neighbour, units per cluster, chips along a
#: fabric dimension, a parallel group, micro-batches): 1 to 1e6.
SmallCount = Annotated[int, int_in(1, 10**6)]
#: A positive count with no physical scale (a batch, a length in tokens, trials, points):
#: 1 to 1e12.
Count = Annotated[int, int_in(1, 10**12)]
#: A seed or other non-negative integer: 0 to 2**63 - 1.
Seed = Annotated[int, int_in(0, 2**63 - 1)]
#: Any finite real (a sweep range's end, checked against its field later).
Real = Annotated[float, real_in(-math.inf, math.inf)]
#: A flag: ``true`` or ``false`` only.
Flag = Annotated[bool, BeforeValidator(strict_bool)]
