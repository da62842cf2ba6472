"""Mapping operators onto a chip: tiling GEMMs onto matrix units, memory fit checks."""

from hwsim.mapping.fit import check_fit
from hwsim.mapping.gemm import GemmMapping, map_gemm, systolic_gemm_cycles

__all__ = ["GemmMapping", "check_fit", "map_gemm", "systolic_gemm_cycles"]
