"""Tenstorrent block floating point (bfp8_b, bfp4_b): widths, the Wormhole preset's native
rate, and emulation or refusal on chips without it."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.dtypes import DTYPE_BYTES, FORMATS, normalize_dtype
from hwsim.errors import MappingError
from hwsim.workload.precision import weight_bits_per_param

DECODE = {"n_layers": 2, "context_len": 512}


def test_block_float_widths_closed_form():
    """bfp8_b: 8 + 8/16 = 8.5 bits; bfp4_b: 4 + 8/16 = 4.5 bits; a 32x32 tile is tt-metal's
    1088 B (bfp8_b) and 576 B (bfp4_b)."""
    assert FORMATS["bfp8_b"].bits == 8.5 and FORMATS["bfp4_b"].bits == 4.5
    assert 1024 * DTYPE_BYTES["bfp8_b"] == 1088 and 1024 * DTYPE_BYTES["bfp4_b"] == 576
    assert normalize_dtype("bfloat8_b") == "bfp8_b" and normalize_dtype("BFLOAT4_B") == "bfp4_b"


def test_block_float_weights_carry_no_group_scale():
    """Weight-only bfp4_b under bf16 activations is 4.5 bits: the shared exponent is its scale."""
    assert weight_bits_per_param("bfp4_b", "bf16", 128, False) == 4.5
    assert weight_bits_per_param("int4", "bf16", 128, False) == 4 + 16 / 128


def test_wormhole_declares_bfp8_b_at_its_published_rate():
    """wormhole-n150: 148 TFLOP/s BlockFP8 (72 Tensix at 1 GHz), between its fp16 and fp8 rates."""
    chip = hwsim.load_arch("wormhole-n150")
    assert chip.peak_flops_per_s("bfp8_b") == pytest.approx(148e12, rel=1e-3)
    assert chip.peak_flops_per_s("fp16") < chip.peak_flops_per_s("bfp8_b") < chip.peak_flops_per_s("fp8")


def test_memory_bound_decode_scales_with_stored_bits():
    """Batch-1 decode on wormhole-n150 is weight-bound: bfp8_b takes longer than fp8, by at most
    their width ratio 8.5/8, and no warning says it is emulated."""
    fp8 = hwsim.simulate(hwsim.load_workload("llama3.1-8b", dtype="fp8", **DECODE), "wormhole-n150")
    bfp8 = hwsim.simulate(hwsim.load_workload("llama3.1-8b", dtype="bfp8_b", **DECODE), "wormhole-n150")
    assert 1.0 < bfp8.latency_s / fp8.latency_s <= 8.5 / 8 + 1e-9
    assert not any("emulated" in w for w in bfp8.warnings)


def test_chip_without_block_float_emulates_or_refuses():
    """bfp8_b weights and activations on an H100 run emulated at the bf16 rate and say so;
    on_unsupported='refuse' refuses; bfp4_b on wormhole-n150 (no published rate) is emulated."""
    prec = {"weights": "bfp8_b", "activations": "bfp8_b"}
    res = hwsim.simulate(hwsim.load_workload("llama2-7b", precision=prec, **DECODE), "h100-sxm")
    assert any("no bfp8_b matrix math" in w and "emulated" in w for w in res.warnings)
    with pytest.raises(MappingError, match="bfp8_b"):
        hwsim.simulate(hwsim.load_workload("llama2-7b", precision={**prec, "on_unsupported": "refuse"},
                                           **DECODE), "h100-sxm")
    w4 = {"weights": "bfp4_b", "activations": "bfp4_b"}
    res4 = hwsim.simulate(hwsim.load_workload("llama2-7b", precision=w4, **DECODE), "wormhole-n150")
    assert any("no bfp4_b matrix math" in w for w in res4.warnings)
