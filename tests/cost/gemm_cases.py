"""Random GEMMs for the tests that hold a fast costing path to the scalar reference
(``test_gemm_arrays.py``, ``test_systolic_gemm.py``)."""

from __future__ import annotations

import random

from hwsim.workload.ops import MatMul


def random_matmuls(seed: int, count: int, dtypes: tuple[str, ...]) -> list[MatMul]:
    """``count`` GEMMs of round and arbitrary sizes, batches, shared or weight B, sparsity
    patterns and biases, reproducible from ``seed``."""
    rng = random.Random(seed)
    sizes = (1, 2, 3, 7, 16, 64, 100, 128, 255, 1000, 4096, 8192)
    ops = []
    for _ in range(count):
        def dim() -> int:
            return rng.choice(sizes) if rng.random() < 0.5 else rng.randint(1, 30000)
        ops.append(MatMul(dim(), dim(), dim(), dtype=rng.choice(dtypes),
                          batch=rng.choice((1, 1, 1, 2, 8, 40)),
                          b_shared=rng.random() < 0.3, b_is_weight=rng.random() < 0.8,
                          sparsity=rng.choice((None, None, None, "2:4", "1:8")), bias=rng.random() < 0.2))
    return ops
