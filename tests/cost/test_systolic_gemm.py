"""The one-pass systolic GEMM cost (``hwsim.cost.matmul.systolic_matmul_cost``) is the
scalar path's result bit for bit: every field of the OpCost, over random shapes, dtypes,
batches, sparsity and systolic chips (presets, other dataflows, per-unit buffers, a
sparsity unit, a ramping level); chips it does not apply to keep the scalar path."""

from __future__ import annotations

import zlib

import pytest

import hwsim
from hwsim.arch import Chip, with_overrides
from hwsim.cost.matmul import matmul_cost, matmul_cost_scalar, systolic_fast_path, systolic_matmul_cost
from hwsim.errors import HwsimError
from hwsim.workload import MatMul
from tests.cost.gemm_cases import random_matmuls

DTYPES = ("bf16", "fp16", "fp8", "fp32", "int8")


def _chips() -> dict[str, Chip]:
    base = hwsim.load_arch("systolic-128")
    chips = {name: hwsim.load_arch(name) for name in ("systolic-128", "tpu-v4", "tpu-v5e", "tpu-v6e",
                                                      "trainium2", "groq-lpu")}
    chips["os 96x40"] = with_overrides(base, {"compute_units.dataflow": "output_stationary",
                                              "compute_units.rows": 96, "compute_units.cols": 40})
    chips["is x3"] = with_overrides(base, {"compute_units.dataflow": "input_stationary",
                                           "compute_units.count": 3,
                                           "compute_units.stationary_double_buffered": True})
    chips["small sram ramp"] = with_overrides(base, {
        "memory.sram.capacity_bytes": 65536, "memory.dram.ramp_s": 2e-6, "memory.dram.ramp_bytes": 1e6})
    sparse = with_overrides(base, {"compute_units.rows": 256})
    chips["2:4 unit"] = Chip.model_validate(sparse.model_dump() | {
        "sparsity": {"patterns": {"2:4": {"speedup": 1.7, "metadata_bits_per_nonzero": 2}}}})
    return chips


CHIPS = _chips()


def _random_ops(seed: int, count: int) -> list[MatMul]:
    return random_matmuls(seed, count, DTYPES)


def _outcome(fn, chip: Chip, op: MatMul) -> object:
    try:
        return fn(chip, op)
    except HwsimError as exc:
        return repr(exc)


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_one_pass_equals_scalar_path(name: str) -> None:
    """systolic_matmul_cost == matmul_cost_scalar exactly for plain GEMMs (dataclass
    equality compares every float, the detail and the compute limit), with or without
    fewest_kernels, and matmul_cost == matmul_cost_scalar for sparse ones too; an
    unsupported dtype is refused with the same error."""
    chip = CHIPS[name]
    assert systolic_fast_path(chip), name
    for op in _random_ops(zlib.crc32(name.encode()), 150):
        scalar = _outcome(matmul_cost_scalar, chip, op)
        assert _outcome(matmul_cost, chip, op) == scalar, (name, op)
        if op.sparsity is not None:
            continue  # sparse GEMMs (metadata, density curves) take the scalar path
        fast = _outcome(systolic_matmul_cost, chip, op)
        assert fast == scalar, (name, op)
        assert fast == _outcome(lambda c, o: matmul_cost_scalar(c, o, True), chip, op), (name, op)


def test_power_limited_and_scratchpad_chips_keep_the_scalar_path() -> None:
    """A power limit (the scalar path times the mapping under it) or SCALE-Sim
    scratchpads (their own byte counts) take the scalar path; so do tensor cores."""
    assert not systolic_fast_path(hwsim.load_arch("gaudi2"))  # power limited
    assert not systolic_fast_path(hwsim.load_arch("h100-sxm"))
    base = hwsim.load_arch("systolic-128")
    split = with_overrides(base, {"memory.sram.buffer_split": [0.5, 0.25, 0.25]})
    assert not systolic_fast_path(split)
    op = MatMul(300, 700, 900)
    assert matmul_cost(split, op) == matmul_cost_scalar(split, op)
