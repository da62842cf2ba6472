"""Architecture models: chips with compute units, vector units and a memory hierarchy."""

from hwsim.arch.load import arch_from_dict, list_archs, load_arch, with_overrides
from hwsim.arch.model import (
    Chip,
    ComputeUnit,
    MemoryLevel,
    SparsityPattern,
    SparsityUnit,
    VectorUnit,
)
from hwsim.arch.single import single_array
from hwsim.arch.system import with_fabric_dims

__all__ = [
    "Chip",
    "ComputeUnit",
    "MemoryLevel",
    "SparsityPattern",
    "SparsityUnit",
    "VectorUnit",
    "arch_from_dict",
    "list_archs",
    "load_arch",
    "single_array",
    "with_fabric_dims",
    "with_overrides",
]
