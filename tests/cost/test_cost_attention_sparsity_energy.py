"""Attention traffic (flash vs naive, GQA), 2:4 structured sparsity, and the energy
model (MACs x energy per MAC, bytes x energy per byte)."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

import hwsim
from hwsim.cost import cost_op
from hwsim.workload import Attention, Elementwise, MatMul

PRESETS = hwsim.list_archs()


def _sixteen_bit(op, chip):  # type: ignore[no-untyped-def]
    """The op in fp16 on a chip without bf16 (the Snapdragon NPU refuses bf16, rightly)."""
    if "bf16" in chip.compute_units.flops_per_cycle:
        return op
    return dataclasses.replace(op, dtype="fp16")


# ---------------------------------------------------------------------------------------
# Attention


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize(
    "op",
    [
        Attention(1, 32, 32, 2048, 2048, 128),
        Attention(8, 64, 8, 1, 4096, 128),
        Attention(2, 16, 16, 512, 512, 64, is_causal=False),
    ],
    ids=["prefill", "gqa-decode", "encoder"],
)
def test_flash_attention_home_traffic_is_qkvo(name: str, op: Attention) -> None:
    """Flash attention moves exactly Q, K, V in and O out at the home level (op.min_bytes)."""
    chip = hwsim.load_arch(name)
    op = _sixteen_bit(op, chip)
    cost = cost_op(op, chip)
    home = cost.traffic[-1]
    assert home.level == chip.home_level
    assert home.bytes == pytest.approx(op.min_bytes, rel=1e-12)
    assert home.write_bytes == pytest.approx(op.qo_bytes, rel=1e-12)


@pytest.mark.parametrize("name", ["h100-sxm", "a100-sxm", "tpu-v4", "systolic-128"])
def test_naive_attention_moves_the_score_matrix(name: str) -> None:
    """Naive attention adds the score matrix's round trips at the home level and is slower."""
    chip = hwsim.load_arch(name)
    flash = Attention(1, 32, 32, 4096, 4096, 128)
    naive = Attention(1, 32, 32, 4096, 4096, 128, impl="naive")
    f, n = cost_op(flash, chip), cost_op(naive, chip)
    extra = n.level_bytes(chip.home_level) - f.level_bytes(chip.home_level)
    assert extra >= 2 * naive.score_bytes  # written and read back at least once
    assert n.latency_s > f.latency_s
    assert n.flops == f.flops


def test_naive_attention_extra_bytes_grow_quadratically() -> None:
    """Naive attention is slower at every length and its extra home bytes grow as seq^2."""
    chip = hwsim.load_arch("h100-sxm")
    extras = []
    for seq in (1024, 4096, 16384):
        f = cost_op(Attention(1, 32, 32, seq, seq, 128), chip)
        n = cost_op(Attention(1, 32, 32, seq, seq, 128, impl="naive"), chip)
        assert n.latency_s > f.latency_s
        extras.append(n.level_bytes("hbm") - f.level_bytes("hbm"))
    assert extras[1] / extras[0] == pytest.approx(16, rel=0.01)
    assert extras[2] / extras[1] == pytest.approx(16, rel=0.01)


def test_gqa_decode_attention_reads_fewer_bytes() -> None:
    """Decode attention with 8 KV heads reads ~1/8 the HBM bytes of MHA and is faster."""
    chip = hwsim.load_arch("h100-sxm")
    gqa = cost_op(Attention(8, 64, 8, 1, 8192, 128), chip)
    mha = cost_op(Attention(8, 64, 64, 1, 8192, 128), chip)
    assert gqa.level_bytes("hbm") / mha.level_bytes("hbm") == pytest.approx(1 / 8, rel=0.01)
    assert gqa.latency_s < mha.latency_s
    assert mha.bound == "hbm"


def test_causal_prefill_attention_costs_about_half_compute() -> None:
    """Causal self-attention's compute time is ~half of non-causal's on long sequences."""
    chip = hwsim.load_arch("h100-sxm")
    causal = cost_op(Attention(1, 32, 32, 8192, 8192, 128, is_causal=True), chip)
    full = cost_op(Attention(1, 32, 32, 8192, 8192, 128, is_causal=False), chip)
    assert causal.flops / full.flops == pytest.approx(0.5, rel=1e-3)
    assert causal.compute_s / full.compute_s == pytest.approx(0.5, rel=0.05)


def test_attention_backward_costs_more_than_forward() -> None:
    """Attention backward does 2.5x the forward's FLOP and moves dO, dQ, dK, dV too."""
    chip = hwsim.load_arch("h100-sxm")
    fwd_op = Attention(2, 32, 32, 2048, 2048, 128)
    bwd_op = Attention(2, 32, 32, 2048, 2048, 128, backward=True)
    fwd, bwd = cost_op(fwd_op, chip), cost_op(bwd_op, chip)
    assert bwd.flops == 2.5 * fwd.flops
    assert bwd.level_bytes("hbm") == pytest.approx(bwd_op.min_bytes, rel=1e-12)
    assert bwd.latency_s > fwd.latency_s


# ---------------------------------------------------------------------------------------
# 2:4 sparsity


def _b_scale(chip: hwsim.Chip, dtype: str = "bf16") -> tuple[float, float]:
    """(speedup, weight-bytes scale) of 2:4 on ``chip``: N/M of the values plus metadata."""
    assert chip.sparsity is not None
    pattern = chip.sparsity.patterns["2:4"]
    width = {"bf16": 2, "fp8": 1}[dtype]
    return pattern.speedup, 0.5 * (1 + pattern.metadata_bits_per_nonzero / 8 / width)


def test_sparsity_speeds_up_compute_by_preset_factor() -> None:
    """2:4 on h100 divides compute time and cycles by the preset's speedup."""
    chip = hwsim.load_arch("h100-sxm")
    speedup, _ = _b_scale(chip)
    dense = cost_op(MatMul(4096, 4096, 4096), chip)
    sparse = cost_op(MatMul(4096, 4096, 4096, sparsity="2:4"), chip)
    assert dense.compute_s / sparse.compute_s == pytest.approx(speedup, rel=1e-12)
    assert dense.compute_cycles / sparse.compute_cycles == pytest.approx(speedup, rel=1e-12)
    assert sparse.flops == dense.flops  # dense-equivalent FLOP are reported
    # The sparse path's fixed overhead comes on top (tests/cost/test_sparse24_curve.py).
    extra = chip.sparsity.patterns["2:4"].kernel_overhead_s
    assert sparse.overhead_s - dense.overhead_s == pytest.approx(extra, rel=1e-12)
    assert sparse.latency_s - extra < dense.latency_s


def test_sparsity_halves_weight_bytes_plus_metadata() -> None:
    """A 2:4 decode GEMM on h100 reads half the weight bytes plus 2 bits of metadata per kept value."""
    chip = hwsim.load_arch("h100-sxm")
    _, scale = _b_scale(chip)
    assert scale == pytest.approx(0.5625)
    op = MatMul(16, 4096, 4096, sparsity="2:4")
    dense = cost_op(MatMul(16, 4096, 4096), chip)
    sparse = cost_op(op, chip)
    saved = dense.traffic[-1].read_bytes - sparse.traffic[-1].read_bytes
    assert saved == pytest.approx(op.b_bytes * (1 - scale), rel=1e-12)
    assert sparse.prefetchable_bytes == pytest.approx(op.b_bytes * scale, rel=1e-12)
    assert dense.prefetchable_bytes == op.b_bytes
    # memory-bound: fewer bytes, faster (but for the sparse path's fixed overhead)
    assert sparse.latency_s - chip.sparsity.patterns["2:4"].kernel_overhead_s < dense.latency_s


def test_sparsity_compresses_every_weight_read() -> None:
    """Every re-read of a 2:4-compressed weight moves compressed bytes (innermost level, big GEMM)."""
    chip = hwsim.load_arch("h100-sxm")
    _, scale = _b_scale(chip)
    m = k = n = 8192
    dense = cost_op(MatMul(m, k, n), chip)
    sparse = cost_op(MatMul(m, k, n, sparsity="2:4"), chip)
    tiles = {re.search(r"tile (\d+)x(\d+)", c.detail).groups() for c in (dense, sparse)}  # type: ignore[union-attr]
    assert len(tiles) == 1  # both pick the same tile, so their re-read counts match
    tile_m = int(next(iter(tiles))[0])
    b_reads = math.ceil(m / tile_m)
    assert b_reads > 1
    saved = dense.traffic[0].read_bytes - sparse.traffic[0].read_bytes
    assert saved == pytest.approx(b_reads * k * n * 2 * (1 - scale), rel=1e-9)


@pytest.mark.parametrize("name", [n for n in PRESETS if hwsim.load_arch(n).sparsity is None])
def test_sparsity_without_sparsity_unit_changes_nothing(name: str) -> None:
    """On a chip with no sparsity unit a 2:4 GEMM costs exactly what the dense one does."""
    chip = hwsim.load_arch(name)
    dense = cost_op(_sixteen_bit(MatMul(512, 1024, 2048), chip), chip)
    sparse = cost_op(_sixteen_bit(MatMul(512, 1024, 2048, sparsity="2:4"), chip), chip)
    assert sparse.latency_s == dense.latency_s
    assert sparse.traffic == dense.traffic
    assert sparse.compute_energy_j == dense.compute_energy_j
    assert "unsupported" in sparse.detail


def test_sparsity_reaches_whole_model_simulation() -> None:
    """A 2:4-pruned llama2-7b runs faster on h100 where its GEMMs are large (a batched long
    prefill), slower in decode (the sparse path's fixed per-GEMM overhead, as measured
    through PyTorch, docs/precision.md), and unchanged on tpu-v4."""
    kw = {"phase": "prefill", "batch": 4, "prompt_len": 4096, "n_layers": 2}
    dense, sparse = (hwsim.load_workload("llama2-7b", **kw, sparsity=s) for s in (None, "2:4"))
    assert hwsim.simulate(sparse, "h100-sxm").latency_s < hwsim.simulate(dense, "h100-sxm").latency_s
    kw = {"phase": "decode", "batch": 1, "context_len": 256, "n_layers": 2}
    dense, sparse = (hwsim.load_workload("llama2-7b", **kw, sparsity=s) for s in (None, "2:4"))
    assert hwsim.simulate(sparse, "h100-sxm").latency_s > hwsim.simulate(dense, "h100-sxm").latency_s
    assert hwsim.simulate(sparse, "tpu-v4").latency_s == hwsim.simulate(dense, "tpu-v4").latency_s


# ---------------------------------------------------------------------------------------
# Energy


@pytest.mark.parametrize("name", PRESETS)
def test_gemm_compute_energy_is_macs_times_energy_per_mac(name: str) -> None:
    """Dense GEMM compute energy = MACs x energy_per_mac_pj(dtype) x 1e-12 J."""
    chip = hwsim.load_arch(name)
    for dtype in chip.supported_dtypes:
        op = MatMul(256, 512, 1024, dtype)
        cost = cost_op(op, chip)
        pj = chip.compute_units.energy_per_mac_pj[dtype]
        assert cost.compute_energy_j == pytest.approx(256 * 512 * 1024 * pj * 1e-12, rel=1e-12)


@pytest.mark.parametrize("name", PRESETS)
def test_level_energy_is_linear_in_bytes(name: str) -> None:
    """Each level's energy = read bytes x read pJ/B + write bytes x write pJ/B."""
    chip = hwsim.load_arch(name)
    for op in (MatMul(1024, 1024, 1024), Elementwise("add", 2048, 2048), Attention(1, 8, 8, 512, 512, 64)):
        cost = cost_op(_sixteen_bit(op, chip), chip)
        for t, joules in zip(cost.traffic, cost.level_energy_j, strict=True):
            lvl = chip.memory[t.level]
            expected = (t.read_bytes * lvl.read_energy_pj_per_byte
                        + t.write_bytes * lvl.write_energy_pj_per_byte) * 1e-12
            assert joules == pytest.approx(expected, rel=1e-12)


def test_streaming_energy_doubles_with_bytes() -> None:
    """Doubling an element-wise op's size doubles its memory and vector energy."""
    chip = hwsim.load_arch("h100-sxm")
    one = cost_op(Elementwise("gelu", 1024, 4096), chip)
    two = cost_op(Elementwise("gelu", 2048, 4096), chip)
    for a, b in zip(one.level_energy_j, two.level_energy_j, strict=True):
        assert b == pytest.approx(2 * a, rel=1e-12)
    assert two.compute_energy_j == pytest.approx(2 * one.compute_energy_j, rel=1e-12)
    assert one.compute_energy_j == pytest.approx(
        1024 * 4096 * 8 * chip.vector_units.energy_per_op_pj * 1e-12, rel=1e-12)


def test_lower_precision_costs_less_energy_per_mac() -> None:
    """On h100 an fp8 GEMM spends less compute energy than the same bf16 GEMM."""
    chip = hwsim.load_arch("h100-sxm")
    bf16 = cost_op(MatMul(2048, 2048, 2048, "bf16"), chip)
    fp8 = cost_op(MatMul(2048, 2048, 2048, "fp8"), chip)
    assert fp8.compute_energy_j < bf16.compute_energy_j
    assert fp8.latency_s < bf16.latency_s
