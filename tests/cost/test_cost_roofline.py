"""Op costs obey the roofline: no op beats the peak math rate or the home memory's
bandwidth, memory-bound streams run at the achievable bandwidth, and more hardware is
never slower."""

from __future__ import annotations

import math

import pytest

import hwsim
from hwsim.arch import Chip, with_overrides
from hwsim.cost import OpCost, cost_op
from hwsim.cost.model import level_bandwidth_bytes_per_s
from hwsim.errors import MappingError
from hwsim.workload import Attention, Elementwise, Embedding, MatMul, Optimizer
from hwsim.workload.ops import ELEMENTWISE_KINDS, Op

PRESETS = hwsim.list_archs()

GEMM_SHAPES = [
    (1, 4096, 4096),
    (16, 4096, 11008),
    (128, 128, 128),
    (7, 13, 17),
    (513, 1000, 300),
    (2048, 2048, 64),
    (4096, 4096, 4096),
    (1, 8192, 128256),
    (8192, 8192, 8192),
]

MIXED_OPS: list[Op] = [
    *(MatMul(*shape) for shape in GEMM_SHAPES[:-1]),
    MatMul(64, 4096, 4096),
    Attention(1, 32, 8, 1, 4096, 128),
    Attention(2, 32, 32, 2048, 2048, 128),
    Attention(1, 32, 32, 2048, 2048, 128, impl="naive"),
    Elementwise("add", 8192, 8192),
    Elementwise("softmax", 4096, 4096),
]


def _cost_or_none(op: Op, chip: Chip) -> OpCost | None:
    try:
        return cost_op(op, chip)
    except MappingError:
        return None


def _home_bandwidth(chip: Chip) -> float:
    home = chip.memory[chip.home_level]
    return home.bandwidth_bytes_per_s * home.achievable_fraction


# ---------------------------------------------------------------------------------------
# Lower bounds


@pytest.mark.parametrize("name", PRESETS)
def test_gemm_latency_respects_roofline(name: str) -> None:
    """Every GEMM on every preset and dtype takes >= max(FLOP / peak, compulsory bytes / home bw)."""
    chip = hwsim.load_arch(name)
    checked = 0
    for dtype in chip.supported_dtypes:
        for m, k, n in GEMM_SHAPES:
            op = MatMul(m, k, n, dtype)
            cost = _cost_or_none(op, chip)
            if cost is None:
                continue
            checked += 1
            bound = max(op.flops / chip.peak_flops_per_s(dtype), op.min_bytes / _home_bandwidth(chip))
            assert cost.latency_s >= bound * (1 - 1e-9), (dtype, m, k, n)
            assert cost.compute_s >= op.flops / chip.peak_flops_per_s(dtype) * (1 - 1e-9)
    assert checked > 0


@pytest.mark.parametrize("name", PRESETS)
def test_gemm_moves_at_least_its_operands_through_every_level(name: str) -> None:
    """Each memory level sees at least A and B read and C written once (compulsory traffic)."""
    chip = hwsim.load_arch(name)
    for m, k, n in GEMM_SHAPES:
        op = MatMul(m, k, n)
        cost = _cost_or_none(op, chip)
        if cost is None:
            continue
        assert [t.level for t in cost.traffic] == list(chip.level_names)
        for t in cost.traffic:
            assert t.bytes >= op.min_bytes * (1 - 1e-9), (t.level, m, k, n)
            assert t.write_bytes >= op.c_bytes * (1 - 1e-9)


@pytest.mark.parametrize("name", PRESETS)
def test_latency_is_overhead_plus_slowest_resource(name: str) -> None:
    """latency = overhead + max(compute, each level's bytes / its achievable bandwidth + ramp)."""
    chip = hwsim.load_arch(name)
    for op in MIXED_OPS:
        cost = _cost_or_none(op, chip)
        if cost is None:
            continue
        slowest = max(cost.compute_s, *cost.level_s)
        assert cost.latency_s == pytest.approx(cost.overhead_s + slowest, rel=1e-12)
        for t, secs in zip(cost.traffic, cost.level_s, strict=True):
            lvl = chip.memory[t.level]
            bandwidth = level_bandwidth_bytes_per_s(chip, t.level) * lvl.achievable_fraction
            ramp = lvl.ramp_s * -math.expm1(-t.bytes / lvl.ramp_bytes) if t.bytes > 0 else 0.0
            assert secs == pytest.approx(t.bytes / bandwidth + ramp, rel=1e-12)
        assert cost.overhead_s >= chip.kernel_overhead_s


# ---------------------------------------------------------------------------------------
# Memory-bound streams


def test_elementwise_at_bandwidth_roof() -> None:
    """A large residual add on h100 is HBM-bound: latency = overhead + 3 x 8192^2 x 2 B /
    (bw x achievable) + the ramp, ramp_s x (1 - exp(-bytes / ramp_bytes)) (nearly saturated)."""
    chip = hwsim.load_arch("h100-sxm")
    op = Elementwise("residual_add", 8192, 8192)
    cost = cost_op(op, chip)
    hbm = chip.memory["hbm"]
    n_bytes = 3 * 8192 * 8192 * 2
    assert cost.level_bytes("hbm") == n_bytes
    assert cost.bound == "hbm"
    assert cost.overhead_s == chip.kernel_overhead_s
    expected = chip.kernel_overhead_s + n_bytes / (hbm.bandwidth_bytes_per_s * hbm.achievable_fraction)
    ramp = hbm.ramp_s * -math.expm1(-n_bytes / hbm.ramp_bytes)
    assert ramp > 0.99 * hbm.ramp_s
    assert cost.latency_s == pytest.approx(expected + ramp, rel=1e-9)


@pytest.mark.parametrize("kind", sorted(ELEMENTWISE_KINDS))
def test_elementwise_streams_its_tensors_once(kind: str) -> None:
    """With ideal fused kernels every element-wise kind moves exactly its compulsory bytes
    at every level."""
    chip = with_overrides(hwsim.load_arch("h100-sxm"), {"vector_kernels": {}})
    op = Elementwise(kind, 1024, 4096)
    cost = cost_op(op, chip)
    assert all(t.bytes == op.min_bytes for t in cost.traffic)
    assert cost.compute_cycles == 0.0
    assert cost.compute_s == pytest.approx(op.flops / chip.vector_units.peak_ops_per_s, rel=1e-12)


def test_unfused_kernel_passes_and_cache_reuse() -> None:
    """An unfused silu_mul (2 kernels, 5 passes) moves 5 tensors through L2 but only 4 at
    HBM when its intermediate fits L2, and all 5 when it does not."""
    chip = hwsim.load_arch("h100-sxm")
    assert chip.vector_kernels["silu_mul"].passes == 5
    small, large = Elementwise("silu_mul", 1024, 4096), Elementwise("silu_mul", 8192, 8192)
    for op, hbm_passes in ((small, 4), (large, 5)):
        cost = cost_op(op, chip)
        size = op.n_elements * 2
        assert cost.level_bytes("l2") == pytest.approx(5 * size)
        assert cost.level_bytes("hbm") == pytest.approx(hbm_passes * size)
        assert cost.overhead_s == pytest.approx(2 * chip.kernel_overhead_s)


def test_embedding_gathers_only_touched_rows() -> None:
    """An embedding lookup's traffic depends on the tokens gathered, not on the vocabulary size."""
    chip = hwsim.load_arch("h100-sxm")
    small = cost_op(Embedding(64, 1000, 4096), chip)
    large = cost_op(Embedding(64, 256000, 4096), chip)
    assert small.level_bytes("hbm") == large.level_bytes("hbm") == 2 * 64 * 4096 * 2


def test_optimizer_moves_its_state() -> None:
    """A fused AdamW moves params, grads and both fp32 moments: its compulsory bytes at HBM."""
    chip = hwsim.load_arch("h100-sxm")
    op = Optimizer(1_000_000)
    cost = cost_op(op, chip)
    assert cost.level_bytes("hbm") == op.min_bytes == 1_000_000 * (2 * 2 + 2 + 4 * 4)
    assert cost.bound == "hbm"


def test_decode_gemv_is_memory_bound() -> None:
    """A batch-1 decode GEMV (1 x 4096 x 4096) on h100 is bound by HBM, not compute."""
    cost = cost_op(MatMul(1, 4096, 4096), hwsim.load_arch("h100-sxm"))
    assert cost.level_s[-1] > cost.compute_s
    assert cost.bound in ("hbm", "overhead")


def test_large_gemm_is_compute_bound() -> None:
    """An 8192^3 bf16 GEMM on h100 is compute-bound near the achievable peak (within 10 %)."""
    chip = hwsim.load_arch("h100-sxm")
    op = MatMul(8192, 8192, 8192)
    cost = cost_op(op, chip)
    assert cost.bound == "compute"
    achievable = chip.peak_flops_per_s("bf16") * chip.compute_units.achievable_fraction
    assert cost.latency_s == pytest.approx(op.flops / achievable, rel=0.10)


# ---------------------------------------------------------------------------------------
# Scaling


@pytest.mark.parametrize("name", ["h100-sxm", "a100-sxm", "tpu-v4", "systolic-128"])
def test_doubling_n_doubles_work(name: str) -> None:
    """Doubling N of a large GEMM doubles FLOP, about doubles time and 5/3-2x the home bytes."""
    chip = hwsim.load_arch(name)
    a = cost_op(MatMul(4096, 4096, 4096), chip)
    b = cost_op(MatMul(4096, 4096, 8192), chip)
    assert b.flops == 2 * a.flops
    home_ratio = b.level_bytes(chip.home_level) / a.level_bytes(chip.home_level)
    assert 5 / 3 - 1e-9 <= home_ratio <= 2.0 + 1e-9  # A reused (5/3) to fully re-read (2)
    assert b.latency_s / a.latency_s == pytest.approx(2.0, rel=0.12)


def test_batched_gemm_scales_with_batch() -> None:
    """A batch of 8 independent GEMMs has 8x the FLOP and at least 8x the compulsory bytes of one."""
    chip = hwsim.load_arch("h100-sxm")
    one = cost_op(MatMul(512, 512, 512), chip)
    eight = cost_op(MatMul(512, 512, 512, batch=8), chip)
    assert eight.flops == 8 * one.flops
    assert eight.level_bytes("hbm") >= 8 * MatMul(512, 512, 512).min_bytes * (1 - 1e-9)
    assert eight.latency_s >= one.latency_s


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("factor", [1.01, 1.5, 4.0])
def test_more_home_bandwidth_never_slower(name: str, factor: float) -> None:
    """Raising the home level's bandwidth never makes any op slower."""
    chip = hwsim.load_arch(name)
    key = f"memory.{chip.home_level}.bandwidth_bytes_per_s"
    faster = with_overrides(chip, {key: chip.memory[chip.home_level].bandwidth_bytes_per_s * factor})
    for op in MIXED_OPS:
        base = _cost_or_none(op, chip)
        if base is None:
            continue
        assert cost_op(op, faster).latency_s <= base.latency_s * (1 + 1e-12), op


@pytest.mark.parametrize("name", PRESETS)
def test_more_of_any_resource_never_slower(name: str) -> None:
    """Doubling clock, any level's capacity or bandwidth, or vector throughput never slows an op."""
    chip = hwsim.load_arch(name)
    overrides: dict[str, dict[str, float]] = {
        "clock": {"compute_units.clock_hz": chip.compute_units.clock_hz * 2},
        "vector": {"vector_units.flops_per_cycle": chip.vector_units.flops_per_cycle * 2},
    }
    for lvl, spec in chip.memory.items():
        overrides[f"{lvl}.capacity"] = {f"memory.{lvl}.capacity_bytes": spec.capacity_bytes * 2}
        bw_key = f"memory.{lvl}.bandwidth_bytes_per_s"
        overrides[f"{lvl}.bandwidth"] = {bw_key: spec.bandwidth_bytes_per_s * 2}
    for label, change in overrides.items():
        bigger = with_overrides(chip, change)
        for op in MIXED_OPS:
            base = _cost_or_none(op, chip)
            if base is None:
                continue
            assert cost_op(op, bigger).latency_s <= base.latency_s * (1 + 1e-12), (label, op)


def _more_units(chip: Chip, factor: float) -> Chip:
    """The chip with ``factor`` x the matrix units (each brings its own per-unit memory)."""
    count = chip.compute_units.count
    return with_overrides(chip, {"compute_units.count": max(count + 1, int(count * factor))})




@pytest.mark.parametrize(
    ("name", "factor"),
    [
        *((name, factor) for name in PRESETS for factor in (1.01, 1.5, 4.0) if name != "wse2"),
        ("wse2", 1.01),
        ("wse2", 1.5),
        ("wse2", 4.0),
    ],
)
def test_more_compute_units_never_slower(name: str, factor: float) -> None:
    """A chip with more matrix units (each with its own local bandwidth) never runs an op slower."""
    chip = hwsim.load_arch(name)
    bigger = _more_units(chip, factor)
    for op in MIXED_OPS:
        base = _cost_or_none(op, chip)
        if base is None:
            continue
        assert cost_op(op, bigger).latency_s <= base.latency_s * (1 + 1e-12), op


def test_more_units_never_slower_split_k_gemm() -> None:
    """1.5x the SMs of an a100 never slows a 256x4096x1024 GEMM (split-K candidate)."""
    chip = hwsim.load_arch("a100-sxm")
    op = MatMul(256, 4096, 1024)
    assert cost_op(op, _more_units(chip, 1.5)).latency_s <= cost_op(op, chip).latency_s * (1 + 1e-12)


# ---------------------------------------------------------------------------------------
# Purity


@pytest.mark.parametrize("name", PRESETS)
def test_cost_op_is_deterministic_and_pure(name: str) -> None:
    """The same op on the same chip (even freshly constructed / reloaded) gives an equal OpCost."""
    chip = hwsim.load_arch(name)
    again = hwsim.load_arch(name)
    snapshot = chip.model_dump()
    for op in MIXED_OPS:
        first = _cost_or_none(op, chip)
        if first is None:
            continue
        twin = type(op)(**{f: getattr(op, f) for f in op.__dataclass_fields__})
        assert twin == op and hash(twin) == hash(op)
        assert cost_op(twin, chip) == first
        assert cost_op(op, again) == first
    assert chip.model_dump() == snapshot


def test_unknown_op_type_rejected() -> None:
    """cost_op refuses an object that is not an operator."""
    with pytest.raises(TypeError):
        cost_op("not an op", hwsim.load_arch("h100-sxm"))  # type: ignore[arg-type]
