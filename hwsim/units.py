"""Unit constants and formatting helpers (a shared leaf module).

Inside hwsim every quantity is held in one base unit (seconds, bytes, joules, hertz,
FLOP); these constants convert at the edges only.
"""

from __future__ import annotations

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KIB = 1024.0
MIB = 1024.0**2
GIB = 1024.0**3
PJ = 1e-12


def format_bytes(n_bytes: float) -> str:
    """Format a byte count with a binary prefix, e.g. ``'13.5 GiB'``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024.0 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{value:.0f} B"
        value /= 1024.0
    return f"{value:.1f} TiB"
