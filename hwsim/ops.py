"""Single operators as workloads: ``hwsim.ops.gemm(...)`` and friends."""

from hwsim.workload.single import attention, elementwise, embedding, gemm

__all__ = ["attention", "elementwise", "embedding", "gemm"]
