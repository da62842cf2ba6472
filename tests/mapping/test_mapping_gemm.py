"""Mapping GEMMs onto matrix units: SCALE-Sim fold closed forms for systolic arrays,
tile/wave mappings for tensor cores, unsupported dtypes, and memory fit checks."""

from __future__ import annotations

import math

import pytest

import hwsim
import hwsim.mapping.gemm as gemm_mapping
from hwsim.arch import with_overrides
from hwsim.cost import cost_op
from hwsim.errors import MappingError
from hwsim.mapping import check_fit, map_gemm, systolic_gemm_cycles
from hwsim.workload import MatMul

WS, OS, IS = "weight_stationary", "output_stationary", "input_stationary"


def _fold(rows: int, cols: int, temporal: int, dataflow: str = WS) -> int:
    """SCALE-Sim's cycles per fold: WS/IS load the stationary operand (2R + C + T - 2),
    OS has nothing to preload (R + C + T - 2)."""
    return (rows if dataflow == OS else 2 * rows) + cols + temporal - 2


def _systolic_128():
    chip = hwsim.load_arch("systolic-128")
    if chip.compute_units.stationary_double_buffered:
        chip = with_overrides(chip, {"compute_units.stationary_double_buffered": False})
    return chip


# ---------------------------------------------------------------------------------------
# Systolic closed forms


def test_one_fold_on_systolic_128() -> None:
    """A 128^3 bf16 MatMul on one 128x128 WS array is one fold: 2*128 + 128 + 128 - 2 = 510 cycles."""
    chip = _systolic_128()
    units = chip.compute_units
    assert (units.rows, units.cols, units.count, units.dataflow) == (128, 128, 1, WS)
    mapping = map_gemm(chip, 128, 128, 128, "bf16")
    assert mapping.compute_cycles == 510
    assert mapping.n_tiles == 1 and mapping.waves == 1
    cost = cost_op(MatMul(128, 128, 128), chip)
    assert cost.compute_cycles == 510
    assert cost.compute_s == pytest.approx(510 / units.clock_hz / units.achievable_fraction, rel=1e-12)


@pytest.mark.parametrize(
    ("m", "k", "n", "dataflow", "folds", "temporal"),
    [
        # WS: rows <- K, cols <- N, streams M
        (128, 129, 128, WS, 2, 128),
        (128, 128, 129, WS, 2, 128),
        (300, 129, 200, WS, 4, 300),
        (1, 4096, 4096, WS, 32 * 32, 1),
        # OS: rows <- M, cols <- N, streams K
        (129, 128, 128, OS, 2, 128),
        (128, 1000, 257, OS, 3, 1000),
        # IS: rows <- K, cols <- M, streams N
        (129, 128, 128, IS, 2, 128),
        (128, 256, 77, IS, 2, 77),
    ],
)
def test_systolic_fold_closed_form(m: int, k: int, n: int, dataflow: str, folds: int, temporal: int) -> None:
    """Cycles are folds x (2R + C + T - 2) (OS: R + C + T - 2), partial folds rounding up."""
    cycles, n_folds = systolic_gemm_cycles(m, k, n, 128, 128, dataflow)
    assert n_folds == folds
    assert cycles == folds * _fold(128, 128, temporal, dataflow)


def test_systolic_folds_spread_over_arrays() -> None:
    """Folds spread over arrays: the busiest array runs ceil(folds / arrays) of them."""
    one, folds = systolic_gemm_cycles(300, 129, 200, 128, 128, WS, n_arrays=1)
    three, _ = systolic_gemm_cycles(300, 129, 200, 128, 128, WS, n_arrays=3)
    many, _ = systolic_gemm_cycles(300, 129, 200, 128, 128, WS, n_arrays=100)
    assert folds == 4
    assert three == math.ceil(4 / 3) * _fold(128, 128, 300)
    assert many == _fold(128, 128, 300)
    assert one == 4 * _fold(128, 128, 300)


def test_systolic_batch_multiplies_folds() -> None:
    """A batch of b GEMMs is b times the folds of one."""
    single, f1 = systolic_gemm_cycles(64, 200, 300, 128, 128, WS)
    batched, f8 = systolic_gemm_cycles(64, 200, 300, 128, 128, WS, batch=8)
    assert f8 == 8 * f1 and batched == 8 * single


def test_systolic_non_square_array() -> None:
    """A rows x cols array folds K over rows and N over cols (WS)."""
    cycles, folds = systolic_gemm_cycles(10, 100, 100, 32, 64, WS)
    assert folds == math.ceil(100 / 32) * math.ceil(100 / 64)
    assert cycles == folds * _fold(32, 64, 10)


def test_double_buffered_streaming_closed_form() -> None:
    """Double-buffered with T >= R: the fill and drain are paid once, each fold streams T."""
    cycles, folds = systolic_gemm_cycles(512, 256, 256, 128, 128, WS, double_buffered=True)
    assert folds == 4
    assert cycles == 4 * 512 + 2 * 128 + 128 - 2


@pytest.mark.parametrize(
    ("m", "k", "n", "n_arrays"),
    [(1, 128, 128, 1), (1, 100, 100, 1), (64, 128, 128, 1), (8, 1024, 1024, 64)],
)
def test_double_buffering_one_fold_per_array_changes_nothing(m: int, k: int, n: int, n_arrays: int) -> None:
    """With a single fold per array there is nothing to overlap: double buffering costs the same."""
    plain, _ = systolic_gemm_cycles(m, k, n, 128, 128, WS, n_arrays=n_arrays)
    buffered, _ = systolic_gemm_cycles(m, k, n, 128, 128, WS, n_arrays=n_arrays, double_buffered=True)
    assert buffered == plain


@pytest.mark.parametrize(
    ("m", "k", "n"), [(16, 4096, 4096), (64, 256, 512), (512, 512, 512), (1, 4096, 128), (200, 300, 400)]
)
def test_double_buffering_never_slower_with_several_folds(m: int, k: int, n: int) -> None:
    """With several folds per array, staging the next fold's weights only saves cycles."""
    plain, folds = systolic_gemm_cycles(m, k, n, 128, 128, WS)
    buffered, _ = systolic_gemm_cycles(m, k, n, 128, 128, WS, double_buffered=True)
    assert folds >= 2
    assert buffered <= plain


def test_double_buffering_saves_fills_on_many_folds() -> None:
    """With many folds, double buffering saves (folds - 1) fills when T >= R."""
    plain, folds = systolic_gemm_cycles(256, 1024, 1024, 128, 128, WS)
    buffered, _ = systolic_gemm_cycles(256, 1024, 1024, 128, 128, WS, double_buffered=True)
    assert folds == 64
    assert plain - buffered == (folds - 1) * (2 * 128 + 128 - 2)


def test_systolic_dtype_rate_scales_cycles() -> None:
    """fp32 at a quarter of the bf16 rate takes 4x the bf16 cycles on systolic-128."""
    chip = _systolic_128()
    rates = chip.compute_units.flops_per_cycle
    bf16 = map_gemm(chip, 256, 256, 256, "bf16").compute_cycles
    fp32 = map_gemm(chip, 256, 256, 256, "fp32").compute_cycles
    assert fp32 / bf16 == pytest.approx(rates["bf16"] / rates["fp32"], rel=1e-12)


@pytest.mark.parametrize("name", ["tpu-v4", "tpu-v5e", "groq-lpu", "systolic-128"])
def test_systolic_presets_use_fold_model(name: str) -> None:
    """map_gemm on a systolic preset reports the fold count and the fold-model cycles."""
    chip = hwsim.load_arch(name)
    u = chip.compute_units
    dtype = "bf16"
    m, k, n = 512, 1024, 2048
    cycles, folds = systolic_gemm_cycles(m, k, n, u.rows, u.cols, u.dataflow, u.count, 1,
                                         u.stationary_double_buffered)
    mapping = map_gemm(chip, m, k, n, dtype)
    rate = 2 * u.rows * u.cols / u.flops_per_cycle[dtype]
    assert mapping.n_tiles == folds
    assert mapping.compute_cycles == pytest.approx(cycles * rate, rel=1e-12)


# ---------------------------------------------------------------------------------------
# Tensor cores


@pytest.mark.parametrize("name", ["h100-sxm", "a100-sxm", "h200-sxm"])
@pytest.mark.parametrize(
    ("m", "k", "n"), [(1, 4096, 4096), (512, 4096, 11008), (8192, 8192, 8192), (77, 300, 1000)]
)
def test_tensor_core_mapping_is_consistent(name: str, m: int, k: int, n: int) -> None:
    """Tiles are whole MMA granules, waves cover every tile/K-slice, and no unit beats its peak."""
    chip = hwsim.load_arch(name)
    u = chip.compute_units
    mp = map_gemm(chip, m, k, n, "bf16")
    assert mp.tile_m % u.rows == 0 and mp.tile_n % u.cols == 0
    assert mp.n_tiles == math.ceil(m / mp.tile_m) * math.ceil(n / mp.tile_n)
    assert mp.waves == math.ceil(mp.n_tiles * mp.split_k / u.count)
    assert mp.split_k >= 1 and mp.split_k <= max(1, k // 256)
    macs_per_cycle_all_units = u.count * u.flops_per_cycle["bf16"] / 2
    assert mp.compute_cycles >= m * k * n / macs_per_cycle_all_units * (1 - 1e-12)


def test_large_gemm_uses_all_units_in_full_waves() -> None:
    """An 8192^3 GEMM on h100 needs no split-K and is within 10 % of the peak-rate cycles."""
    chip = hwsim.load_arch("h100-sxm")
    u = chip.compute_units
    mp = map_gemm(chip, 8192, 8192, 8192, "bf16")
    assert mp.split_k == 1
    ideal = 8192**3 / (u.count * u.flops_per_cycle["bf16"] / 2)
    assert mp.compute_cycles == pytest.approx(ideal, rel=0.10)


@pytest.mark.parametrize(("m", "k", "n"), [(256, 4096, 1024), (1, 8192, 1024), (4096, 4096, 128)])
def test_split_k_chosen_only_when_it_helps(monkeypatch: pytest.MonkeyPatch, m: int, k: int, n: int) -> None:
    """The chosen mapping is no slower (cost_op) than the best mapping without split-K."""
    chip = hwsim.load_arch("h100-sxm")
    op = MatMul(m, k, n)
    chosen = cost_op(op, chip).latency_s
    monkeypatch.setattr(gemm_mapping, "MIN_SPLIT_K", 10**12)
    unsplit = cost_op(op, chip)
    assert "split_k 1" in unsplit.detail
    assert chosen <= unsplit.latency_s * (1 + 1e-9)


@pytest.mark.parametrize(("m", "k", "n"), [(8192, 8192, 8192), (4096, 4096, 4096), (1, 4096, 4096)])
def test_chosen_mapping_not_worse_than_unsplit_control(
    monkeypatch: pytest.MonkeyPatch, m: int, k: int, n: int
) -> None:
    """For large square GEMMs and a decode GEMV the chosen mapping is no slower than unsplit."""
    chip = hwsim.load_arch("h100-sxm")
    op = MatMul(m, k, n)
    chosen = cost_op(op, chip).latency_s
    monkeypatch.setattr(gemm_mapping, "MIN_SPLIT_K", 10**12)
    assert chosen <= cost_op(op, chip).latency_s * (1 + 1e-9)


# ---------------------------------------------------------------------------------------
# Unsupported dtypes and memory fit


@pytest.mark.parametrize(("name", "dtype"), [("tpu-v4", "fp8"), ("a100-sxm", "fp8"), ("h100-sxm", "int4")])
def test_unsupported_dtype_raises_mapping_error(name: str, dtype: str) -> None:
    """A dtype the matrix units do not list raises MappingError naming it and the chip."""
    chip = hwsim.load_arch(name)
    assert dtype not in chip.compute_units.flops_per_cycle
    with pytest.raises(MappingError) as info:
        map_gemm(chip, 128, 128, 128, dtype)
    assert dtype in str(info.value) and name in str(info.value)
    with pytest.raises(MappingError):
        cost_op(MatMul(128, 128, 128, dtype), chip)


def test_unsupported_dtype_model_fails_simulation() -> None:
    """Simulating an fp8 model on tpu-v4 raises MappingError naming fp8."""
    w = hwsim.load_workload("llama2-7b", phase="decode", context_len=64, n_layers=1, dtype="fp8")
    with pytest.raises(MappingError) as info:
        hwsim.simulate(w, "tpu-v4")
    assert "fp8" in str(info.value)


def test_model_too_large_for_memory() -> None:
    """llama2-70b in bf16 (138 GB) does not fit an 80 GB H100: MappingError says where and by how much."""
    w = hwsim.load_workload("llama2-70b", phase="decode", context_len=1024)
    chip = hwsim.load_arch("h100-sxm")
    with pytest.raises(MappingError) as info:
        check_fit(w, chip)
    text = str(info.value)
    assert "llama2-70b" in text and "h100-sxm" in text and "hbm" in text
    assert "weights" in text and "over by" in text
    with pytest.raises(MappingError):
        hwsim.simulate(w, chip)


def test_model_that_fits_passes_check() -> None:
    """llama2-7b decode (13.5 GB weights + cache) fits an H100's HBM."""
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=8, context_len=2048)
    check_fit(w, hwsim.load_arch("h100-sxm"))


def test_fit_counts_kv_cache() -> None:
    """The KV cache counts against capacity: a huge batch x context overflows even a 7B model."""
    chip = hwsim.load_arch("h100-sxm")
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=64, context_len=32768)
    assert w.resident_bytes["weights_bytes"] < chip.level_capacity_bytes(chip.home_level)
    with pytest.raises(MappingError) as info:
        check_fit(w, chip)
    assert "kv cache" in str(info.value)


def test_fit_counts_training_state() -> None:
    """Training llama2-13b needs weights, gradients and fp32 moments (~156 GB): not one H100."""
    w = hwsim.load_workload("llama2-13b", phase="train", batch=1, seq_len=512)
    assert w.resident_bytes["weights_bytes"] < 80e9 < sum(w.resident_bytes.values())
    with pytest.raises(MappingError) as info:
        check_fit(w, hwsim.load_arch("h100-sxm"))
    assert "optimizer state" in str(info.value)
