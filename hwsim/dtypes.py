"""Numeric data types: names, byte widths and aliases (a shared leaf module)."""

from __future__ import annotations

from typing import Literal, get_args

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]
"""The data types an architecture may state a throughput for."""

DTYPES: tuple[str, ...] = get_args(DType)

#: Storage width of one element, in bytes. tf32 is stored as fp32.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5,  # e2m1 with a shared block scale (NVFP4/MXFP4): the scales are not counted
    "int4": 0.5,
}

_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "e4m3": "fp8",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
    "e2m1": "fp4",
}


def normalize_dtype(name: str) -> str:
    """Return the canonical dtype name for ``name`` (case-insensitive, with aliases).

    Raises
    ------
    ValueError
        If ``name`` is not a known dtype; the message lists the known ones.
    """
    if isinstance(name, str) and name in DTYPE_BYTES:  # canonical: the common case, asked per operand
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return key


def dtype_bytes(name: str) -> float:
    """Bytes per element of dtype ``name``."""
    return DTYPE_BYTES[normalize_dtype(name)]


def accumulator_dtype(name: str) -> str:
    """The dtype results are written in: low-precision math writes bf16, int writes int8."""
    key = normalize_dtype(name)
    return {"fp8": "bf16", "fp4": "bf16", "int4": "int8"}.get(key, key)
