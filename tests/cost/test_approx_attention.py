"""Approximate attention (SpAtten, A3, ELSA, Sanger): dense when nothing is pruned, never
slower with more pruning, a selection unit that costs something, closed-form bytes."""

from __future__ import annotations

from dataclasses import replace

import pytest

import hwsim
from hwsim.cost import cost_op
from hwsim.cost.approx_attention import _selection, kept_attention
from hwsim.cost.attention import attention_cost
from hwsim.workload.ops import Attention
from hwsim.workload.pruning import AttentionApprox

CHIPS = ("h100-sxm", "spatten", "systolic-128", "tpu-v4", "elsa")
OPS = {
    "decode": Attention(2, 16, 16, 1, 993, 64, True, "bf16"),
    "prefill": Attention(1, 12, 12, 128, 128, 64, False, "bf16"),
    "gqa causal": Attention(1, 32, 8, 512, 512, 128, True, "bf16"),
}
SELECTIONS = ("topk", "a3", "elsa", "sanger")


def _chip(name: str) -> hwsim.Chip:
    return hwsim.load_arch(name)


@pytest.mark.parametrize("chip_name", CHIPS)
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("selection", ("none", *SELECTIONS))
def test_nothing_pruned_is_dense_attention_bit_for_bit(chip_name: str, op_name: str, selection: str) -> None:
    """All fractions kept at 1 and no progressive quantization: the dense cost, exactly."""
    chip, op = _chip(chip_name), OPS[op_name]
    approx = AttentionApprox(selection=selection)
    assert cost_op(replace(op, approx=approx), chip) == cost_op(op, chip)


@pytest.mark.parametrize("chip_name", ("h100-sxm", "spatten", "tpu-v4"))
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("field", ("token_keep", "head_keep", "score_keep"))
def test_more_pruning_is_never_slower(chip_name: str, op_name: str, selection: str, field: str) -> None:
    """Keeping less (once something is pruned) never raises latency or energy."""
    chip, op = _chip(chip_name), OPS[op_name]
    costs = [cost_op(replace(op, approx=AttentionApprox(selection=selection, **{field: keep})), chip)
             for keep in (0.95, 0.8, 0.6, 0.4, 0.2, 0.05)]
    for more, less in zip(costs, costs[1:], strict=False):
        assert less.latency_s <= more.latency_s * (1 + 1e-12)
        assert less.compute_energy_j <= more.compute_energy_j * (1 + 1e-12)


@pytest.mark.parametrize("chip_name", ("h100-sxm", "spatten"))
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("selection", SELECTIONS)
def test_selection_hardware_costs_time_and_energy(chip_name: str, op_name: str, selection: str) -> None:
    """The selection unit's work comes on top of the kept dense attention."""
    chip, op = _chip(chip_name), OPS[op_name]
    approx = AttentionApprox(token_keep=0.5, score_keep=0.5, selection=selection)
    approx_op = replace(op, approx=approx)
    kept = attention_cost(chip, kept_attention(approx_op))
    got = cost_op(approx_op, chip)
    assert got.compute_s > kept.compute_s
    assert got.compute_energy_j > kept.compute_energy_j


@pytest.mark.parametrize("op_name", sorted(OPS))
def test_sanger_selection_stages_add_in_series_and_overlap_in_a_pipeline(op_name: str) -> None:
    """Sanger's selection works on both unit kinds (the low-bit prediction on the matrix
    units, the pack on the vector units): in series their times add to the kept work's;
    as a pipeline of its own the longest of the three stages sets the time."""
    chip, op = _chip("sanger"), OPS[op_name]
    serial = AttentionApprox(score_keep=0.2, selection="sanger", predict_bits=4)
    piped = replace(serial, selection_overlapped=True)
    kept_s = attention_cost(chip, kept_attention(replace(op, approx=serial))).compute_s
    vector_ops, matrix_s, _ = _selection(chip, op, serial)
    vector_s = vector_ops / chip.vector_units.peak_ops_per_s
    assert vector_s > 0.0 and matrix_s > 0.0
    serial_s = cost_op(replace(op, approx=serial), chip).compute_s
    piped_s = cost_op(replace(op, approx=piped), chip).compute_s
    assert serial_s == pytest.approx(kept_s + vector_s + matrix_s)
    assert piped_s == pytest.approx(max(kept_s, vector_s, matrix_s))


def test_kept_shape_follows_the_fractions() -> None:
    """Token pruning cuts keys (and queries of a many-query pass), head pruning whole KV
    groups, candidate filtering the keys each query scores."""
    op = replace(OPS["gqa causal"], approx=AttentionApprox(token_keep=0.5, head_keep=0.5, score_keep=0.5,
                                                           selection="topk"))
    kept = kept_attention(op)
    assert (kept.n_kv_heads, kept.n_heads, kept.kv_len, kept.q_len) == (4, 16, 128, 128)
    decode = kept_attention(replace(OPS["decode"], approx=AttentionApprox(token_keep=0.1, selection="topk")))
    assert (decode.q_len, decode.kv_len) == (1, 100)


def test_progressive_quantization_reads_msbs_and_refetched_lsbs() -> None:
    """Home-level reads fall by the K/V bytes not fetched: (msb + refetch x lsb) of 16 bits."""
    chip, op = _chip("spatten"), OPS["decode"]
    dense = cost_op(op, chip)
    approx = AttentionApprox(msb_bits=8, lsb_bits=8, refetch_fraction=0.25, selection="topk")
    got = cost_op(replace(op, approx=approx), chip)
    home = chip.home_level
    expected = dense.level_bytes(home) - op.kv_bytes * (1 - (8 + 0.25 * 8) / 16)
    assert got.level_bytes(home) == pytest.approx(expected)
    # Re-fetching more is never faster.
    more = cost_op(replace(op, approx=replace(approx, refetch_fraction=0.75)), chip)
    assert more.latency_s >= got.latency_s and more.compute_energy_j > got.compute_energy_j
