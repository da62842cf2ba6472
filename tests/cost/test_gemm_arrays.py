"""The array evaluation of a GEMM's mappings (``hwsim.cost.gemm_arrays``) gives the scalar
path's result bit for bit: same candidates, same per-candidate costs, same winner and
alternative, over random shapes, dtypes, batches, sparsity and chips (presets and
variants that throttle every mapping, ramp an on-chip level or feed from a shared one)."""

from __future__ import annotations

import numpy as np
import pytest

import hwsim
from hwsim.arch import Chip, with_overrides
from hwsim.cost.gemm_arrays import candidate_costs
from hwsim.cost.matmul import _shared, mapping_cost, mapping_times, matmul_cost, matmul_cost_scalar
from hwsim.errors import HwsimError
from hwsim.mapping.gemm import gemm_candidates
from hwsim.mapping.gemm_arrays import arrays_are_exact, tensor_core_candidates
from hwsim.workload import MatMul
from tests.cost.gemm_cases import random_matmuls

DTYPES = ("bf16", "fp16", "fp8", "tf32", "fp32", "int8")


def _chips() -> dict[str, Chip]:
    h100 = hwsim.load_arch("h100-sxm")
    chips = {name: hwsim.load_arch(name) for name in ("h100-sxm", "h200-sxm", "a100-sxm", "wse2", "tpu-v4")}
    # Every mapping over the limit and no bucket: the power-limited times decide the pick.
    chips["h100 throttled"] = with_overrides(h100, {"power_limit_w": 300.0, "burst_energy_j": 0.0})
    chips["h100 l2 ramp"] = with_overrides(h100, {"memory.l2.ramp_s": 2e-6, "memory.l2.ramp_bytes": 1e7})
    return chips


CHIPS = _chips()


def _random_ops(seed: int, count: int) -> list[MatMul]:
    return random_matmuls(seed, count, DTYPES)


def _outcome(fn, chip: Chip, op: MatMul, fewest: bool) -> object:
    try:
        return fn(chip, op, fewest)
    except HwsimError as exc:
        return repr(exc)


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_array_path_equals_scalar_path(name: str) -> None:
    """matmul_cost (arrays) == matmul_cost_scalar exactly: every field, the alternative
    mapping included, or the same error."""
    chip = CHIPS[name]
    differ = []
    ops = _random_ops(seed=sum(map(ord, name)), count=120)
    for op in ops:
        for fewest in (False, True):
            got = _outcome(matmul_cost, chip, op, fewest)
            if got != _outcome(matmul_cost_scalar, chip, op, fewest):
                differ.append((op, fewest))
    assert not differ, differ[:5]
    # The comparison is not vacuous: many ops cost, some with an alternative on limited chips.
    costs = [c for c in (_outcome(matmul_cost, chip, op, False) for op in ops) if not isinstance(c, str)]
    assert len(costs) > len(ops) // 3
    if name == "h100 throttled":
        assert any(c.alternative is not None for c in costs)


@pytest.mark.parametrize("name", ["h100-sxm", "wse2", "h100 throttled"])
def test_candidate_arrays_are_the_scalar_candidates(name: str) -> None:
    """The arrays hold gemm_candidates' mappings in its order, and each candidate's
    latency, on-chip time, energy and home bytes are its scalar record's."""
    chip = CHIPS[name]
    for op in _random_ops(seed=7, count=60):
        if op.dtype not in chip.compute_units.flops_per_cycle or not arrays_are_exact(chip, op.m, op.k, op.n,
                                                                                      op.batch):
            continue
        cands = tensor_core_candidates(chip, op.m, op.k, op.n, op.dtype, op.batch)
        scalar = gemm_candidates(chip, op.m, op.k, op.n, op.dtype, op.batch)
        assert [cands.mapping(i) for i in range(len(cands))] == scalar
        shared = _shared(chip, op)
        costs = candidate_costs(chip, op, cands, speedup=shared.speedup, b_scale=shared.b_scale,
                                outer_tiles=shared.outer_tiles, compute_energy_j=shared.compute_energy_j)
        for i, mapping in enumerate(scalar):
            cost = mapping_cost(chip, op, mapping, shared)
            assert costs.latency_s[i] == cost.latency_s
            assert costs.on_chip_s[i] == mapping_times(chip, cost)[2]
            assert costs.energy_j[i] == cost.compute_energy_j + sum(cost.level_energy_j)
            assert costs.home_bytes[i] == cost.traffic[-1].bytes
            assert costs.n_kernels[i] == cost.n_kernels


def test_systolic_and_huge_gemms_take_the_scalar_path() -> None:
    """Systolic arrays (one candidate) and GEMMs whose integer products would leave int64
    are not evaluated as arrays."""
    assert not arrays_are_exact(CHIPS["tpu-v4"], 64, 64, 64, 1)
    assert arrays_are_exact(CHIPS["h100-sxm"], 8192, 8192, 8192, 1)
    assert not arrays_are_exact(CHIPS["h100-sxm"], 2**17, 2**17, 2**17, 1)
    big = MatMul(2**17, 2**17, 2**17)
    assert matmul_cost(CHIPS["h100-sxm"], big) == matmul_cost_scalar(CHIPS["h100-sxm"], big)


def test_arrays_are_float64_and_int64() -> None:
    """Candidate arrays hold exact integers and float64 cycles (no float32 anywhere)."""
    cands = tensor_core_candidates(CHIPS["h100-sxm"], 333, 4096, 11008, "bf16")
    assert cands.tile_m.dtype == np.int64 and cands.split_k.dtype == np.int64
    assert cands.compute_cycles.dtype == np.float64
    assert len(cands) == len(gemm_candidates(CHIPS["h100-sxm"], 333, 4096, 11008, "bf16"))
