"""Mapping operators onto a chip: tiling GEMMs onto matrix units, memory fit checks."""

from hwsim.mapping.fit import check_fit
from hwsim.mapping.gemm import GemmMapping, map_gemm
from hwsim.mapping.systolic import SystolicTraffic, systolic_gemm_cycles, systolic_gemm_traffic

__all__ = [
    "GemmMapping", "SystolicTraffic", "check_fit", "map_gemm", "systolic_gemm_cycles",
    "systolic_gemm_traffic",
]
