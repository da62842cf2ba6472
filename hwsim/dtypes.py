"""Numeric data types: names, byte widths and aliases (a shared leaf module).

Besides the plain formats, block-scaled ("microscaling") formats carry one shared
scale per block of elements; their stored width includes that scale:

- ``nvfp4``: fp4 e2m1 elements, one e4m3 scale per 16 elements (NVIDIA Blackwell);
  the per-tensor fp32 scale is negligible and not counted.
- ``mxfp8`` / ``mxfp6`` / ``mxfp4``: OCP Microscaling v1.0 formats, 32 elements of fp8
  (e4m3), fp6 (e2m3) or fp4 (e2m1) sharing one e8m0 (8-bit power of two) scale.
- ``bfp8_b`` / ``bfp4_b``: Tenstorrent block floating point (ttnn's ``bfloat8_b`` and
  ``bfloat4_b``): each element a sign and a 7-bit (3-bit) mantissa, 16 elements sharing
  one 8-bit exponent, so 8.5 (4.5) bits per element. Sources: tenstorrent/tt-buda
  docs/public/dataformats.rst (table "Tensix Data Format Support": BFP8-B 1-bit sign,
  8-bit shared exponent, 7-bit mantissa; "The exponent is always shared across all
  elements in a block of 16 elements"); tenstorrent/tt-metal
  tt_metal/api/tt-metalium/constants.hpp (``BFLOAT8_B_TILE_HW = TILE_HW + 64``: a 32x32
  tile is 1024 one-byte datums and 64 exponent bytes, 1088 B; ``BFLOAT4_B_TILE_HW =
  TILE_HW / 2 + 64``, 576 B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4",
                "fp6", "fp4", "int2", "nvfp4", "mxfp8", "mxfp6", "mxfp4", "bfp8_b", "bfp4_b"]
"""The data types an architecture may state a throughput for."""

DTYPES: tuple[str, ...] = get_args(DType)
#: The plain formats every generic array runs (:func:`hwsim.arch.single.single_array`);
#: the narrower and block-scaled ones are declared by the chips that have them.
PLAIN_DTYPES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")


@dataclass(frozen=True)
class NumberFormat:
    """How one element of a format is stored.

    Attributes
    ----------
    element_bits : float
        Bits of one element's own encoding.
    block_size : int
        Elements sharing one scale (0: no shared scale).
    scale_bits : float
        Bits of that shared scale.
    is_integer : bool
        Integer (fixed-point) elements rather than floating point.
    """

    element_bits: float
    block_size: int = 0
    scale_bits: float = 0.0
    is_integer: bool = False

    @property
    def bits(self) -> float:
        """Stored bits per element, the block scale included."""
        return self.element_bits + (self.scale_bits / self.block_size if self.block_size else 0.0)


FORMATS: dict[str, NumberFormat] = {
    "fp32": NumberFormat(32),
    "tf32": NumberFormat(32),  # stored as fp32
    "bf16": NumberFormat(16),
    "fp16": NumberFormat(16),
    "fp8": NumberFormat(8),  # e4m3 or e5m2: same width, same rate on every preset
    "int8": NumberFormat(8, is_integer=True),
    "int4": NumberFormat(4, is_integer=True),
    "fp6": NumberFormat(6),
    "fp4": NumberFormat(4),  # e2m1 elements; block-scaled fp4 is nvfp4 / mxfp4
    "int2": NumberFormat(2, is_integer=True),
    "nvfp4": NumberFormat(4, block_size=16, scale_bits=8),
    "mxfp8": NumberFormat(8, block_size=32, scale_bits=8),
    "mxfp6": NumberFormat(6, block_size=32, scale_bits=8),
    "mxfp4": NumberFormat(4, block_size=32, scale_bits=8),
    # Sign + mantissa per element, one shared 8-bit exponent per 16 (module docstring).
    "bfp8_b": NumberFormat(8, block_size=16, scale_bits=8),
    "bfp4_b": NumberFormat(4, block_size=16, scale_bits=8),
}

#: Storage width of one element, in bytes (block formats: their shared scale included).
DTYPE_BYTES: dict[str, float] = {name: fmt.bits / 8 for name, fmt in FORMATS.items()}

_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "e4m3": "fp8",
    "e5m2": "fp8",
    "fp6_e2m3": "fp6",
    "fp6_e3m2": "fp6",
    "fp4_e2m1": "fp4",
    "e2m1": "fp4",
    "bfloat8_b": "bfp8_b",  # ttnn's dtype names
    "bfloat4_b": "bfp4_b",
}

#: The element format whose matrix rate a block-scaled format runs at on a chip that
#: states no rate of its own for it: a chip declaring ``fp4`` math (Blackwell) runs NVFP4
#: and MXFP4 at that rate. (MXFP8/MXFP6 are not mapped: fp8 tensor cores without block
#: scaling, as Hopper's, do not run MXFP8. Tenstorrent's bfp8_b/bfp4_b are not mapped
#: either: their elements are sign-magnitude mantissas under a shared exponent, which
#: no other matrix unit's element format runs; a chip without them emulates or refuses.)
RATE_FAMILY: dict[str, str] = {"nvfp4": "fp4", "mxfp4": "fp4"}


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


def dtype_bits(name: str) -> float:
    """Stored bits per element of dtype ``name`` (block scales included)."""
    return FORMATS[normalize_dtype(name)].bits


def accumulator_dtype(name: str) -> str:
    """The dtype results are written in: low-precision float math writes bf16, int writes int8."""
    key = normalize_dtype(name)
    fmt = FORMATS[key]
    if fmt.element_bits >= 16:
        return key
    if key == "int8":
        return key
    return "int8" if fmt.is_integer else "bf16"
