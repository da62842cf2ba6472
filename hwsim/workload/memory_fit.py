"""Why a chip's memory does not fit a level: the messages a plan search and a run show.

Split from :mod:`hwsim.workload.memory` so the memory model and its wording stay apart.
"""

from __future__ import annotations

from hwsim.units import GIB, format_bytes
from hwsim.workload.placement import _ITEMS, ChipMemory
from hwsim.workload.plan import Plan

__all__ = ["fit_problems", "host_fit_problems"]


def _gib(n_bytes: float) -> str:
    """Bytes with a binary prefix (``1.0 GiB``, ``219.3 MiB``): memory sizes are binary."""
    return format_bytes(n_bytes)


def _listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def fit_problems(mem: ChipMemory, capacity_bytes: float, level: str, plan: Plan) -> list[str]:
    """Why ``mem`` does not fit a memory level of ``capacity_bytes`` (empty if it fits).

    The message names the plan, the largest item, the level and what the other items
    take from it (binary units: GiB, MiB), and the overflow, e.g. ``tp2: 64.2 GiB of weights per chip
    exceeds hbm 80.0 GiB minus 20.0 GiB of KV cache and 1.0 GiB of workspace; short by
    5.3 GiB``.
    """
    over = mem.total_bytes - capacity_bytes
    if over <= 0:
        return []
    sizes = {name: getattr(mem, key) for key, name in _ITEMS.items()}
    dominant = max(sizes, key=lambda name: sizes[name])
    others = [f"{_gib(size)} of {name}" for name, size in sizes.items()
              if name != dominant and size >= 0.05 * GIB]
    minus = f" minus {_listing(others)}" if others else ""
    return [f"{plan.label()}: {_gib(sizes[dominant])} of {dominant} per chip exceeds {level} "
            f"{_gib(capacity_bytes)}{minus}; short by {_gib(over)}"]


def host_fit_problems(mem: ChipMemory, host_capacity_bytes: float, plan: Plan | None = None,
                      level: str = "host memory") -> list[str]:
    """Why the offloaded bytes do not fit the host memory one chip may use (empty if
    they do); pass the host's capacity divided by the chips that share it."""
    over = mem.offloaded_bytes - host_capacity_bytes
    if over <= 0:
        return []
    prefix = f"{plan.label()}: " if plan is not None else ""
    return [f"{prefix}{_gib(mem.offloaded_bytes)} offloaded per chip exceeds {level} "
            f"{_gib(host_capacity_bytes)}; short by {_gib(over)}"]
