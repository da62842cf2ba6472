"""Attention dataflow: softmax costs the vector unit declares, block sizes from the
buffers, and the systolic mapper's fused-vs-GEMMs choice (hwsim issue 16, items 11-12)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

import hwsim
from hwsim.arch import Chip, with_overrides
from hwsim.cost.attention import attention_cost, attention_cost_with_block, cheapest_block, systolic_dataflows
from hwsim.cost.attention_batch import attention_batch_cost
from hwsim.errors import ConfigError
from hwsim.mapping.attention import (
    MAX_BLOCK,
    MIN_BLOCK,
    attention_blocks,
    block_bytes,
    block_fits,
    largest_block,
    unit_buffer_bytes,
)
from hwsim.workload.ops import Attention
from tests.cost.attention_golden_cases import CASES, GOLDEN, compute_golden

PRESETS = hwsim.list_archs()
TENSOR_CORE = [n for n in PRESETS if hwsim.load_arch(n).compute_units.kind == "tensor_core"]
SYSTOLIC = [n for n in PRESETS if n not in TENSOR_CORE]


def _override(chip: Chip, **fields: Any) -> Chip:
    return with_overrides(chip, fields)


# --- golden: the new fields' defaults change nothing -------------------------------------

def test_defaults_with_the_old_block_reproduce_every_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the old fixed 128 x 128 block, every preset's attention cost (ten shapes and a
    varlen batch: latency, energy, compute time, bytes per level) equals the pinned one
    exactly: the softmax fields' defaults and the systolic mapper's choice move nothing."""
    real = hwsim.load_arch

    def pinned(name: str) -> Chip:
        # model_copy skips validation: chips whose buffer cannot hold a 128 x 128 score tile
        # (the validator refuses declaring one) ran the old formula with it all the same.
        chip = real(name)
        return chip.model_copy(update={"compute_units": chip.compute_units.model_copy(
            update={"attention_block": (128, 128)})})

    monkeypatch.setattr(hwsim, "load_arch", pinned)
    assert compute_golden() == json.loads(GOLDEN.read_text())


def test_presets_that_declare_their_block_keep_their_costs() -> None:
    """The presets whose attention_exp_overlap was fitted with 128 x 128 blocks declare it,
    so their attention costs do not move at any head size."""
    golden = json.loads(GOLDEN.read_text())
    declared = [n for n in PRESETS if hwsim.load_arch(n).compute_units.attention_block is not None]
    assert {"h100-sxm", "h200-sxm", "b200-sxm", "gb200"} <= set(declared)
    now = compute_golden()
    for name in declared:
        assert now[name] == golden[name], name


# --- softmax on the vector unit ------------------------------------------------------------

def _weak_vector_systolic() -> Chip:
    """systolic-128 with one slow vector lane: its attention is softmax bound."""
    chip = hwsim.load_arch("systolic-128")
    return _override(chip, **{"vector_units.flops_per_cycle": 1.0, "vector_units.count": 1})


def test_systolic_softmax_time_is_scores_times_ops_over_rate() -> None:
    """Softmax-bound attention on a systolic array: compute time = scores x (softmax ops
    + lanes / exp rate) / lane rate, for special-function, polynomial and table exps."""
    op = Attention(1, 4, 4, 256, 256, 64, is_causal=False)
    scores = op.batch * op.n_heads * op.n_scores
    base = _weak_vector_systolic()
    rate = base.vector_units.peak_ops_per_s
    for fields, ops in [
        ({}, 3 + 1),
        ({"vector_units.softmax_ops_per_element": 7.0}, 7 + 1),
        ({"vector_units.exp_impl": "polynomial", "vector_units.exp_ops_per_element": 9.0}, 3 + 9),
        ({"vector_units.exp_impl": "lookup_table", "vector_units.exp_ops_per_element": 2.0}, 3 + 2),
    ]:
        chip = _override(base, **fields)
        cost = systolic_dataflows(chip, op)["fused"]
        assert cost.compute_s == pytest.approx(scores * ops / rate, rel=1e-12), fields


def test_softmax_energy_is_scores_times_ops() -> None:
    """Attention energy beyond the MACs is scores x (softmax + exponential ops) x pJ/op."""
    op = Attention(2, 8, 8, 512, 512, 64)
    for name in ("h100-sxm", "tpu-v5e"):
        chip = _override(hwsim.load_arch(name), **{"vector_units.energy_per_op_pj": 2.0,
                                                   "vector_units.softmax_ops_per_element": 5.0})
        macs_j = op.flops / 2 * chip.compute_units.mac_energy_pj("bf16") * 1e-12
        scores = op.batch * op.n_heads * op.n_scores
        assert attention_cost(chip, op).compute_energy_j == pytest.approx(
            macs_j + scores * (5.0 + 1.0) * 2.0e-12, rel=1e-12)


def _one_unit_tensor_core(**fields: Any) -> Chip:
    """h100-sxm cut to one SM, no exponential overlap, so one work unit's blocks run in series."""
    chip = hwsim.load_arch("h100-sxm")
    base = {"compute_units.count": 1, "vector_units.count": 1, "vector_units.attention_exp_overlap": 0.0}
    return _override(chip, **(base | fields))


def test_tensor_core_exp_time_is_exps_over_rate() -> None:
    """One unit, four key blocks of 128 x 128 scores: each lane op a polynomial exponential
    adds costs blocks x scores / lanes cycles."""
    op = Attention(1, 1, 1, 128, 512, 128, is_causal=False)
    poly = {"vector_units.exp_per_cycle": None, "vector_units.exp_impl": "polynomial"}
    t = {n: attention_cost(_one_unit_tensor_core(**poly, **{"vector_units.exp_ops_per_element": float(n)}),
                           op).compute_s for n in (4, 8)}
    chip = _one_unit_tensor_core()
    expected = 4 * 128 * 128 * (8 - 4) / chip.vector_units.flops_per_cycle / chip.compute_units.clock_hz
    assert t[8] - t[4] == pytest.approx(expected, rel=1e-9)


def test_lookup_table_is_bounded_by_its_ports_and_beats_a_longer_polynomial() -> None:
    """A 2-op table beats an 8-op polynomial; a table with fewer ports than lanes is no
    faster than its ports allow."""
    op = Attention(1, 1, 1, 128, 4096, 128, is_causal=False)
    poly = _one_unit_tensor_core(**{"vector_units.exp_per_cycle": None, "vector_units.exp_impl": "polynomial",
                                    "vector_units.exp_ops_per_element": 8.0})
    lut = _override(poly, **{"vector_units.exp_impl": "lookup_table",
                             "vector_units.exp_ops_per_element": 2.0})
    narrow = _override(lut, **{"vector_units.exp_lookups_per_cycle": 4.0})
    assert lut.vector_units.exp_per_cycle_per_unit == 64.0
    assert narrow.vector_units.exp_per_cycle_per_unit == 4.0
    t_poly, t_lut, t_narrow = (attention_cost(c, op).compute_s for c in (poly, lut, narrow))
    assert t_lut < t_poly < t_narrow


@pytest.mark.parametrize("name", PRESETS)
def test_more_softmax_or_exp_ops_are_never_faster(name: str) -> None:
    """On every preset, more lane ops per score or per exponential never shorten attention."""
    chip = hwsim.load_arch(name)
    if "bf16" not in chip.supported_dtypes:
        pytest.skip("no bf16")
    ops = [CASES["prefill_causal_4k_d128"], CASES["decode_gqa_32k"]]
    poly = {"vector_units.exp_per_cycle": None, "vector_units.exp_impl": "polynomial"}
    for op in ops:
        lat = [attention_cost(_override(chip, **{"vector_units.softmax_ops_per_element": n}), op).latency_s
               for n in (0.0, 3.0, 12.0)]
        assert lat == sorted(lat)
        lat = [attention_cost(_override(chip, **poly, **{"vector_units.exp_ops_per_element": n}),
                              op).latency_s for n in (1.0, 4.0, 16.0)]
        assert lat == sorted(lat)


def test_fused_score_pipeline_hides_exponentials_under_the_products() -> None:
    """A fused score pipeline costs a block max(products, exponentials): with exps shorter
    than the products, the whole time is the products'; it is never slower than without."""
    op = Attention(1, 1, 1, 128, 512, 128, is_causal=False)
    plain = _one_unit_tensor_core()
    fused = _one_unit_tensor_core(**{"vector_units.fused_score_pipeline": True})
    no_exp = _one_unit_tensor_core(**{"vector_units.exp_per_cycle": 1e9})
    assert attention_cost(fused, op).compute_s == pytest.approx(attention_cost(no_exp, op).compute_s,
                                                                rel=1e-6)
    assert attention_cost(fused, op).compute_s < attention_cost(plain, op).compute_s
    for name in TENSOR_CORE:
        chip = hwsim.load_arch(name)
        if "bf16" not in chip.supported_dtypes:
            continue
        on = _override(chip, **{"vector_units.fused_score_pipeline": True})
        for case in ("prefill_causal_4k_d128", "decode_gqa_32k"):
            assert attention_cost(on, CASES[case]).latency_s <= attention_cost(chip, CASES[case]).latency_s


def test_varlen_batch_reads_the_same_softmax_fields() -> None:
    """The varlen kernel's time follows exp_ops_per_element as the uniform kernel's does."""
    template = CASES["decode_gqa_32k"]
    q, k = np.array([1, 1, 1, 300]), np.array([4096, 100, 70000, 300])
    base = hwsim.load_arch("a100-sxm")
    slow = _override(base, **{"vector_units.exp_impl": "polynomial",
                              "vector_units.exp_ops_per_element": 40.0})
    assert (attention_batch_cost(slow, template, q, k).compute_s
            > attention_batch_cost(base, template, q, k).compute_s)


# --- block sizes from the buffers ----------------------------------------------------------

def test_h100_buffer_rule_gives_128_at_d128_and_64_at_d256() -> None:
    """Unpinned, the H100's 228 KiB per SM hold a 128 x 128 block at d = 128, 64 x 64 at d = 256."""
    chip = _override(hwsim.load_arch("h100-sxm"), **{"compute_units.attention_block": None})
    assert largest_block(chip, Attention(1, 32, 8, 4096, 4096, 128)) == (128, 128)
    assert largest_block(chip, Attention(1, 32, 8, 4096, 4096, 256)) == (64, 64)
    assert attention_blocks(hwsim.load_arch("h100-sxm"), Attention(1, 32, 8, 4096, 4096, 256)) == [(128, 128)]


def test_block_bytes_closed_form() -> None:
    """Q + K + V tiles at the element size, fp32 accumulator and score tile."""
    op = Attention(1, 8, 8, 1024, 1024, 128)
    assert block_bytes(64, 32, op) == 2 * (64 * 128 + 32 * 256) + 4 * 64 * (128 + 32)
    mla = Attention(1, 128, 1, 1, 8192, 576, v_head_dim=512, latent_kv=True)
    assert block_bytes(16, 16, mla) == 2 * (16 * 576 + 16 * 576) + 4 * 16 * (512 + 16)


def test_largest_block_is_the_largest_that_fits() -> None:
    """The largest candidate fits, and no block with more rows x keys does; every
    candidate fits."""
    sides = [MIN_BLOCK << i for i in range(5)]
    for name in ("a100-sxm", "t4", "h100-sxm", "wse2", "tpu-v5e"):
        chip = _override(hwsim.load_arch(name), **{"compute_units.attention_block": None})
        for d in (64, 128, 256):
            op = Attention(1, 8, 8, 2048, 2048, d)
            rows, keys = largest_block(chip, op)
            blocks = attention_blocks(chip, op)
            # Every candidate fits, or none does and the smallest stands in (a spill).
            assert all(block_fits(chip, op, b) for b in blocks) or blocks == [(MIN_BLOCK, MIN_BLOCK)]
            bigger = [(r, c) for r in sides for c in sides if r * c > rows * keys]
            assert not any(block_fits(chip, op, b) for b in bigger), (name, d)


@pytest.mark.parametrize("op", [Attention(2, 32, 32, 2048, 2048, 128), Attention(1, 32, 8, 1, 8192, 128),
                                Attention(1, 16, 8, 1000, 1000, 256, is_causal=False)])
def test_a_larger_buffer_never_gives_a_smaller_block_or_a_slower_kernel(op: Attention) -> None:
    """Growing the per-unit buffer never shrinks the largest block, never shrinks the
    working set of the block the mapper keeps (a larger buffer only adds candidates),
    and never slows the kernel."""
    chip = hwsim.load_arch("a100-sxm")
    areas, kept, lat = [], [], []
    for cap in (16_384, 32_768, 65_536, 131_072, 262_144, 1 << 20, 1 << 24):
        big = _override(chip, **{"memory.smem.capacity_bytes": cap})
        rows, keys = largest_block(big, op)
        areas.append(rows * keys)
        kept.append(block_bytes(*cheapest_block(big, op), op))
        lat.append(attention_cost(big, op).latency_s)
    assert areas == sorted(areas) and areas[-1] == MAX_BLOCK * MAX_BLOCK
    assert kept == sorted(kept)
    assert lat == sorted(lat, reverse=True)


def test_the_mapper_keeps_the_cheapest_fitting_block() -> None:
    """attention_cost is the cheapest of its candidate blocks (the largest on a tie): on
    an A100 a causal 2k prefill keeps 128-row blocks over 256-row ones, whose fewer,
    longer units balance worse under the causal mask."""
    chip = _override(hwsim.load_arch("a100-sxm"), **{"memory.smem.capacity_bytes": 335_872})
    op = Attention(2, 32, 32, 2048, 2048, 128)
    costs = {b: attention_cost_with_block(chip, op, b) for b in attention_blocks(chip, op)}
    best = min(costs.values(), key=lambda c: c.latency_s)
    assert attention_cost(chip, op).latency_s == best.latency_s
    assert largest_block(chip, op) == (256, 64)
    assert cheapest_block(chip, op)[0] == 128
    assert costs[(256, 64)].latency_s > best.latency_s


def test_shared_innermost_level_is_split_over_the_units() -> None:
    """A chip without a per-unit level gives each array its share of the innermost level."""
    chip = hwsim.load_arch("tpu-v5e")
    first = chip.memory[chip.level_names[0]]
    assert unit_buffer_bytes(chip) == first.capacity_bytes / chip.compute_units.count


def test_block_size_moves_kv_rereads_and_time() -> None:
    """The level inside home re-reads K and V once per query block: with Br = 64 instead
    of 128 a causal 4k prefill re-reads them (64 - 1) x share times, not (32 - 1) x share,
    and the smaller block's kernel differs in time."""
    op = CASES["prefill_causal_4k_d128"]
    base = hwsim.load_arch("h100-sxm")
    small = _override(base, **{"compute_units.attention_block": [64, 64]})
    group = op.n_heads // op.n_kv_heads
    share = op.n_scores / (op.q_len * op.kv_keys)
    inner = {n: attention_cost(c, op).traffic[1].read_bytes for n, c in (("128", base), ("64", small))}
    assert inner["64"] - inner["128"] == pytest.approx(op.kv_bytes * group * share * (64 - 32), rel=1e-12)
    assert attention_cost(small, op).latency_s != attention_cost(base, op).latency_s
    assert "block 64x64" in attention_cost(small, op).detail


@pytest.mark.parametrize(("block", "words"), [
    ([100, 128], "not a power of two"),
    ([8, 128], "outside the plausible range [16, 256]"),
    ([128, 512], "attention_block[1]: 512 is outside"),
])
def test_bad_blocks_are_refused(block: list[int], words: str) -> None:
    """A block side off the power-of-two 16..256 grid is a ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        _override(hwsim.load_arch("a100-sxm"), **{"compute_units.attention_block": block})
    assert "compute_units" in str(info.value) and words in str(info.value)


def test_a_block_whose_scores_exceed_the_buffer_is_refused() -> None:
    """A declared block whose fp32 score tile alone outgrows the unit's buffer is refused
    (a T4 SM has 64 KiB; 256 x 256 scores are 256 KiB)."""
    with pytest.raises(ConfigError) as info:
        _override(hwsim.load_arch("t4"), **{"compute_units.attention_block": [256, 256]})
    assert "attention_block 256 x 256" in str(info.value)
    assert _override(hwsim.load_arch("t4"), **{"compute_units.attention_block": [64, 64]})


@pytest.mark.parametrize(("fields", "words"), [
    ({"vector_units.softmax_ops_per_element": -1.0}, "vector_units.softmax_ops_per_element"),
    ({"vector_units.exp_ops_per_element": 0.5}, "vector_units.exp_ops_per_element"),
    ({"vector_units.exp_impl": "cordic"}, "vector_units.exp_impl"),
    ({"vector_units.exp_lookups_per_cycle": 8.0}, "only when exp_impl is lookup_table"),
    ({"vector_units.exp_impl": "polynomial"}, "conflicts with exp_impl polynomial"),
])
def test_bad_softmax_fields_are_refused(fields: dict[str, Any], words: str) -> None:
    """Negative or sub-unit op counts, unknown exp implementations and contradictory
    fields are ConfigErrors naming the field (h100-sxm declares exp_per_cycle)."""
    with pytest.raises(ConfigError) as info:
        _override(hwsim.load_arch("h100-sxm"), **fields)
    assert words in str(info.value)


def test_a_fused_score_pipeline_on_a_systolic_chip_is_refused() -> None:
    """fused_score_pipeline is read by tensor-core kernels only: a systolic chip refuses it."""
    with pytest.raises(ConfigError) as info:
        _override(hwsim.load_arch("tpu-v5e"), **{"vector_units.fused_score_pipeline": True})
    assert "vector_units" in str(info.value) and "tensor-core" in str(info.value)


# --- systolic arrays: fused dataflow or two batched GEMMs ---------------------------------

def _many_small_arrays() -> Chip:
    """systolic-128 as 128 arrays sharing 6 MiB: 48 KiB each holds only a 16 x 16 block at d = 256."""
    chip = hwsim.load_arch("systolic-128")
    return _override(chip, **{"compute_units.count": 128, "vector_units.count": 128,
                              "memory.sram.capacity_bytes": 6 * 2**20})


@pytest.mark.parametrize("name", SYSTOLIC)
def test_the_mapper_keeps_the_cheaper_dataflow_and_says_which(name: str) -> None:
    """Both dataflows are costed; attention_cost is the cheaper (the fused on a tie), and
    its detail names it."""
    chip = hwsim.load_arch(name)
    for case in ("prefill_causal_4k_d128", "prefill_noncausal_1k_d64", "decode_gqa_32k"):
        op = CASES[case]
        flows = systolic_dataflows(chip, op)
        chosen = attention_cost(chip, op)
        assert chosen.latency_s == min(f.latency_s for f in flows.values())
        want = "two_gemms" if flows["two_gemms"].latency_s < flows["fused"].latency_s else "fused"
        assert chosen == flows[want]
        assert ("two batched GEMMs" in chosen.detail) == (want == "two_gemms")


def test_long_sequences_fuse_when_the_scores_outgrow_the_buffer() -> None:
    """At 32k tokens the score matrix outgrows the on-chip buffer: two GEMMs would send it
    through DRAM four times, so the mapper fuses."""
    chip = hwsim.load_arch("systolic-128")
    op = Attention(1, 8, 8, 32768, 32768, 128)
    assert op.score_bytes > chip.level_capacity_bytes("sram")
    flows = systolic_dataflows(chip, op)
    assert "scores in dram" in flows["two_gemms"].detail
    dram = chip.level_names.index("dram")
    assert flows["two_gemms"].traffic[dram].bytes - flows["fused"].traffic[dram].bytes == 4 * op.score_bytes
    assert flows["fused"].latency_s < flows["two_gemms"].latency_s
    assert "two batched GEMMs" not in attention_cost(chip, op).detail


def test_small_blocks_and_resident_scores_favour_two_gemms() -> None:
    """With 48 KiB per array the fused kernel's 16-row blocks re-read K and V 64 times;
    a 1k x 1k score matrix fits the 6 MiB buffer, so two GEMMs move fewer bytes there
    and win; both dataflows read and write DRAM alike."""
    chip = _many_small_arrays()
    op = Attention(1, 1, 1, 1024, 1024, 256, is_causal=False)
    assert attention_blocks(chip, op) == [(16, 16)] and block_fits(chip, op, (16, 16))
    flows = systolic_dataflows(chip, op)
    assert flows["fused"].traffic[-1] == flows["two_gemms"].traffic[-1]
    rereads = op.kv_bytes * (1024 // 16 - 1)
    assert flows["fused"].traffic[0].read_bytes - (flows["two_gemms"].traffic[0].read_bytes
                                                  - 2 * op.score_bytes) == rereads
    assert flows["two_gemms"].traffic[0].bytes < flows["fused"].traffic[0].bytes
    assert flows["two_gemms"].latency_s < flows["fused"].latency_s
    assert "two batched GEMMs, scores in sram" in attention_cost(chip, op).detail
    # The same chip fuses once the scores no longer fit its buffer.
    long = Attention(1, 1, 1, 4096, 4096, 256, is_causal=False)
    assert long.score_bytes > chip.level_capacity_bytes("sram")
    assert "two batched GEMMs" not in attention_cost(chip, long).detail


def test_tiny_sequences_choose_deterministically() -> None:
    """At 16 tokens both dataflows are costed, the choice is the same on every call, and
    the fused one's single kernel wins over three."""
    chip = hwsim.load_arch("tpu-v5e")
    op = Attention(1, 4, 4, 16, 16, 64)
    flows = systolic_dataflows(chip, op)
    assert flows["two_gemms"].n_kernels == 3 and flows["fused"].n_kernels == 1
    picks = {attention_cost(chip, op).detail for _ in range(3)}
    assert picks == {flows["fused"].detail}
    assert math.isfinite(flows["two_gemms"].latency_s)


def test_a_block_larger_than_the_buffer_is_said() -> None:
    """A head size whose smallest block overflows the unit's buffer (the M2 Ultra's 32 KiB
    at head_dim 256) is costed, and the result says it ran without spill traffic; a head
    size that fits says nothing."""
    from hwsim.workload import lower, spec_from_dict

    def spec(head_dim: int):  # type: ignore[no-untyped-def]
        return spec_from_dict({"num_hidden_layers": 1, "hidden_size": 8 * head_dim,
                               "num_attention_heads": 8, "intermediate_size": 4096,
                               "vocab_size": 1000, "max_position_embeddings": 4096})

    chip = hwsim.load_arch("apple-m2-ultra")
    wide = hwsim.simulate(lower(spec(256), "prefill", prompt_len=512), chip)
    assert any(w.startswith("attention:") and "head_dim 256" in w for w in wide.warnings)
    narrow = hwsim.simulate(lower(spec(64), "prefill", prompt_len=512), chip)
    assert not any(w.startswith("attention:") for w in narrow.warnings)
