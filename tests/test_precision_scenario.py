"""The issue's scenario end to end: W4A16 + fp8 KV on an H100 against MXFP4 on an imagined
chip with a block-sparse unit, LLaMA-3-70B decode at 32k context under a sliding window."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.arch import with_overrides
from hwsim.errors import ConfigError

H100 = hwsim.load_arch("h100-sxm")
SHAPE = {"phase": "decode", "batch": 8, "context_len": 32768, "n_layers": 4}


def _imagined():
    """An H100 with MXFP4 math at twice its fp8 rate and fp8's MAC energy (an assumption),
    and a skipping 4x4 block-sparse unit."""
    unit = H100.compute_units
    rates = {**unit.flops_per_cycle, "mxfp4": 2 * unit.flops_per_cycle["fp8"]}
    energies = {**unit.energy_per_mac_pj, "mxfp4": unit.energy_per_mac_pj["fp8"]}
    return with_overrides(H100, {"name": "h100-mx", "compute_units.flops_per_cycle": rates,
                                 "compute_units.energy_per_mac_pj": energies,
                                 "sparsity.blocks": {"4x4": {"format": "bitmask", "action": "skip"}}})


def test_attention_window_caps_the_cache():
    """attention_window=4096 holds 4096 keys per sequence instead of 32769."""
    full = hwsim.load_workload("llama3-70b", **SHAPE)
    window = hwsim.load_workload("llama3-70b", attention_window=4096, **SHAPE)
    assert window.resident_bytes["kv_cache_bytes"] == pytest.approx(
        full.resident_bytes["kv_cache_bytes"] * 4096 / 32769)
    assert hwsim.simulate(window, "h100-sxm").latency_s < hwsim.simulate(full, "h100-sxm").latency_s
    with pytest.raises(ConfigError, match="attention_window"):
        hwsim.load_workload("llama3-70b", attention_window=0, **SHAPE)


def test_w4a16_fp8kv_h100_vs_mxfp4_block_sparse_chip():
    """Each configuration gives latency, energy and memory; the native MXFP4 chip with a
    block-sparse unit is the fastest, and the accuracy proxy is a lookup or None."""
    kw = {"attention_window": 4096, **SHAPE}
    a = hwsim.simulate(hwsim.load_workload("llama3-70b", precision="w4a16-fp8kv", **kw), H100)
    mx = {"scheme": "mxfp4", "kv_cache": "fp8"}
    chip = _imagined()
    b = hwsim.simulate(hwsim.load_workload("llama3-70b", precision=mx, **kw), chip)
    c = hwsim.simulate(hwsim.load_workload("llama3-70b", precision=mx, sparsity="block4x4:0.5", **kw), chip)
    for r in (a, b, c):
        assert r.latency_s > 0 and r.energy_j > 0 and r.bytes_by_level["hbm_bytes"] > 0
        assert not any(w.startswith(("precision", "sparsity")) for w in r.warnings)
    assert c.latency_s < b.latency_s
    assert hwsim.accuracy_delta("llama3-70b", "w4a16-zp", metric="mmlu_loss_pct") == pytest.approx(1.29)
    assert hwsim.accuracy_delta("llama3-70b", "mxfp4", metric="mmlu_loss_pct") is None


def test_block_sparse_attention_density():
    """attention_density=0.25: a decode reads and scores a quarter of the keys, a prefill
    scores a quarter; density 1 is dense exactly; bad densities are refused."""
    from hwsim.workload.ops import Attention

    kw = {"n_layers": 2, "context_len": 8192, "batch": 4}
    dense = hwsim.load_workload("llama2-7b", **kw)
    sparse = hwsim.load_workload("llama2-7b", attention_density=0.25, **kw)

    def attn(w):
        return next(op for p in w.passes for s in p.segments for _, op in s.graph.ops()
                    if isinstance(op, Attention))

    a, b = attn(dense), attn(sparse)
    assert b.n_scores == pytest.approx(a.n_scores / 4)
    assert b.kv_bytes == pytest.approx(a.kv_bytes / 4, rel=1e-3)
    assert hwsim.simulate(sparse, H100).latency_s < hwsim.simulate(dense, H100).latency_s
    one = hwsim.load_workload("llama2-7b", attention_density=1.0, **kw)
    assert hwsim.simulate(one, H100).latency_s == hwsim.simulate(dense, H100).latency_s
    pre = Attention(1, 32, 32, 4096, 4096, 128, key_density=0.5)
    full = Attention(1, 32, 32, 4096, 4096, 128)
    assert pre.n_scores == full.n_scores / 2 and pre.kv_keys == full.kv_keys  # the union reads all
    assert cost_latency(pre) < cost_latency(full)
    with pytest.raises(ConfigError, match="attention_density"):
        hwsim.load_workload("llama2-7b", attention_density=1.5, **kw)


def cost_latency(op):
    from hwsim.cost import cost_op

    return cost_op(op, H100).latency_s
