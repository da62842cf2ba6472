"""Does a workload fit a chip's memory? Says what does not fit where, and by how much."""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.errors import MappingError
from hwsim.units import format_bytes
from hwsim.workload.graph import Workload


def check_fit(workload: Workload, chip: Chip) -> None:
    """Raise :class:`MappingError` if the workload's resident bytes (weights, KV cache,
    gradients, optimizer state, saved activations) exceed the home memory level."""
    home = chip.home_level
    capacity = chip.level_capacity_bytes(home)
    need = {k: v for k, v in workload.resident_bytes.items() if v > 0}
    total = sum(need.values())
    if total <= capacity:
        return
    parts = " + ".join(f"{format_bytes(v)} of {k.removesuffix('_bytes').replace('_', ' ')}"
                       for k, v in need.items())
    raise MappingError(
        f"{workload.name} ({workload.phase}) needs {parts} = {format_bytes(total)}; "
        f"{chip.name} memory '{home}' holds {format_bytes(capacity)} "
        f"(over by {format_bytes(total - capacity)})"
    )
