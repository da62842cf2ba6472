"""Density-driven sparsity units (Sparseloop-style): storage formats, skip vs gate,
speed-up as a function of density, unsupported patterns run dense and say so."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.arch import with_overrides
from hwsim.cost import cost_op
from hwsim.errors import ConfigError
from hwsim.mapping.sparsity import sparse_effect, sparse_metadata_bits
from hwsim.workload.ops import MatMul, parse_sparsity

H100 = hwsim.load_arch("h100-sxm")


def _sparse_h100(**unit):
    """An H100 with an imagined unstructured (bitmask) and 4x4-block (CSR) unit."""
    return with_overrides(H100, {
        "sparsity.unstructured": {"format": "bitmask", "action": "skip", **unit},
        "sparsity.blocks": {"4x4": {"format": "csr", "action": "skip", **unit}}})


def test_parse_patterns():
    """N:M, unstructured and block patterns parse with their densities; bad ones say why."""
    assert parse_sparsity("2:4").density == 0.5
    assert parse_sparsity("unstructured:0.3").kind == "unstructured"
    assert parse_sparsity("block4x4:0.25").key == "4x4"
    for bad in ("unstructured:0", "unstructured:1.5", "block4:0.5", "dense", "3:2"):
        with pytest.raises(ValueError):
            parse_sparsity(bad)
    with pytest.raises(ConfigError, match="sparsity"):
        hwsim.load_workload("llama2-7b", n_layers=1, sparsity="unstructured:2")


def test_metadata_bits_closed_forms():
    """Bitmask: a bit per position; CSR: an index per nonzero + 32 bits a row; COO: two; RLE: one."""
    chip = _sparse_h100()
    unit = chip.sparsity.unstructured
    assert sparse_metadata_bits(unit, 0.25, 4096) == 1.0
    for fmt, expected in (("csr", 0.25 * 8 + 32 / 4096), ("coo", 0.25 * 16), ("rle", 0.25 * 8)):
        assert sparse_metadata_bits(unit.model_copy(update={"format": fmt}), 0.25, 4096) == expected
    assert sparse_metadata_bits(unit, 0.25, 4096, block_elems=16) == 1 / 16


def test_density_one_is_dense():
    """Density 1.0 costs exactly what the dense GEMM costs."""
    chip = _sparse_h100()
    for pattern in ("unstructured:1.0", "block4x4:1"):
        dense = cost_op(MatMul(512, 4096, 4096), chip)
        assert cost_op(MatMul(512, 4096, 4096, sparsity=pattern), chip) == dense


def test_skip_speedup_follows_density_and_saturates():
    """A skipping unit's compute time scales with density down to min_density; weights shrink."""
    chip = _sparse_h100(min_density=0.2, efficiency=0.8)
    dense = cost_op(MatMul(4096, 4096, 4096), chip)
    times = []
    for d in (0.9, 0.5, 0.3, 0.2, 0.1):
        effect = sparse_effect(chip, MatMul(4096, 4096, 4096, sparsity=f"unstructured:{d}"))
        assert effect.speedup == pytest.approx(1 / min(1.0, max(d, 0.2) / 0.8))
        assert effect.b_scale == pytest.approx(d + 1 / 16)  # bf16 values + 1 bitmask bit
        times.append(cost_op(MatMul(4096, 4096, 4096, sparsity=f"unstructured:{d}"), chip).compute_s)
    assert times[0] == pytest.approx(dense.compute_s)  # 0.9/0.8 > 1: no speed-up
    assert times == sorted(times, reverse=True)
    assert times[-1] == pytest.approx(times[-2])  # below min_density nothing more


def test_gate_saves_energy_not_time():
    """A gating unit spends the dense cycles but only the nonzeros' MAC energy."""
    chip = _sparse_h100(action="gate")
    dense = cost_op(MatMul(4096, 4096, 4096), chip)
    gated = cost_op(MatMul(4096, 4096, 4096, sparsity="unstructured:0.25"), chip)
    assert gated.compute_s == pytest.approx(dense.compute_s)
    assert gated.compute_energy_j == pytest.approx(0.25 * dense.compute_energy_j)
    assert gated.compute_energy_j >= 0


def test_decode_cost_on_vector_units():
    """Metadata decode ops add vector time in proportion to the nonzeros."""
    plain = cost_op(MatMul(4096, 4096, 4096, sparsity="block4x4:0.5"), _sparse_h100())
    chip = _sparse_h100(decode_ops_per_nonzero=1.0)
    decoding = cost_op(MatMul(4096, 4096, 4096, sparsity="block4x4:0.5"), chip)
    assert decoding.compute_s > plain.compute_s


def test_unsupported_pattern_runs_dense_and_warns():
    """An unstructured pattern on a chip without the unit runs dense and the result says so."""
    w = hwsim.load_workload("llama2-7b", n_layers=2, context_len=256, sparsity="unstructured:0.5")
    res = hwsim.simulate(w, "h100-sxm")
    dense = hwsim.simulate(hwsim.load_workload("llama2-7b", n_layers=2, context_len=256), "h100-sxm")
    assert res.latency_s == dense.latency_s
    assert any("unstructured:0.5" in line and "run dense" in line for line in res.warnings)
    sparse = hwsim.simulate(w, _sparse_h100())
    assert sparse.latency_s < dense.latency_s
    assert not any("unstructured" in line for line in sparse.warnings)


def test_bad_block_key_is_refused():
    """A sparsity unit's block shape must read RxC."""
    with pytest.raises(ConfigError, match="blocks"):
        with_overrides(H100, {"sparsity.blocks": {"4by4": {"format": "csr"}}})


def test_sparsity_per_part():
    """A {part: pattern} mapping prunes only that part's GEMMs; a bad part is refused."""
    w = hwsim.load_workload("llama2-7b", n_layers=1, context_len=256, sparsity={"ffn": "unstructured:0.5"})
    ops = {name: op for p in w.passes for s in p.segments for name, op in s.graph.ops()}
    assert ops["down_proj"].sparsity == "unstructured:0.5" and ops["qkv_proj"].sparsity is None
    both = hwsim.load_workload("llama2-7b", n_layers=1, context_len=256,
                               sparsity={"attention": "2:4", "ffn": "block4x4:0.5"})
    ops = {name: op for p in both.passes for s in p.segments for name, op in s.graph.ops()}
    assert ops["o_proj"].sparsity == "2:4" and ops["up_proj"].sparsity == "block4x4:0.5"
    chip = _sparse_h100()
    dense = hwsim.simulate(hwsim.load_workload("llama2-7b", n_layers=1, context_len=256), chip)
    assert hwsim.simulate(w, chip).latency_s < dense.latency_s
    with pytest.raises(ConfigError, match="sparsity: unknown part 'mlp'"):
        hwsim.load_workload("llama2-7b", n_layers=1, sparsity={"mlp": "2:4"})
