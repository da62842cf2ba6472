"""Sharded lowering: conservation of work across a tensor-parallel group, and the
collectives Megatron-LM places."""

from __future__ import annotations

import pytest

from hwsim.errors import ConfigError
from hwsim.workload import load_model_spec, lower
from hwsim.workload.ops import Collective, MatMul
from hwsim.workload.plan import Plan


def _layer_ops(w, seg="layer"):  # type: ignore[no-untyped-def]
    return [(n, op) for p in w.passes for s in p.segments if s.name == seg for n, op in s.graph.ops()]


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_tensor_parallel_conserves_gemm_flops(tp: int) -> None:
    """tp chips together do the layer's GEMM work exactly once."""
    spec = load_model_spec("llama2-70b")
    one = lower(spec, "prefill", batch=2, prompt_len=256)
    split = lower(spec, "prefill", batch=2, prompt_len=256, plan=Plan(tp=tp))
    flops = [sum(op.flops for _, op in _layer_ops(w) if isinstance(op, MatMul)) for w in (one, split)]
    # K/V heads (8) split evenly up to tp = 8, so nothing is replicated.
    assert flops[1] * tp == pytest.approx(flops[0])


def test_megatron_places_two_all_reduces_per_layer() -> None:
    spec = load_model_spec("llama2-7b")
    w = lower(spec, "decode", batch=8, context_len=512, plan=Plan(tp=4))
    coll = [op for _, op in _layer_ops(w) if isinstance(op, Collective)]
    assert [c.op_kind for c in coll] == ["all_reduce", "all_reduce"]
    assert all(c.n_bytes == 8 * spec.hidden_size * 2 and c.group_size == 4 for c in coll)


def test_sequence_parallel_swaps_all_reduce_for_reduce_scatter_and_all_gather() -> None:
    spec = load_model_spec("llama2-7b")
    w = lower(spec, "prefill", batch=1, prompt_len=1024, plan=Plan(tp=4, sequence_parallel=True))
    kinds = sorted(op.op_kind for _, op in _layer_ops(w) if isinstance(op, Collective))
    assert kinds == ["all_gather", "all_gather", "reduce_scatter", "reduce_scatter"]


def test_data_parallel_training_reduces_each_layers_gradients_with_overlap() -> None:
    spec = load_model_spec("llama2-7b")
    w = lower(spec, "train", batch=8, seq_len=512, n_layers=4, plan=Plan(dp=4))
    sync = [op for _, op in _layer_ops(w, "layer_bwd") if isinstance(op, Collective)]
    assert len(sync) == 1 and sync[0].overlap and sync[0].group == "dp"


def test_expert_parallel_adds_dispatch_and_combine() -> None:
    spec = load_model_spec("mixtral-8x7b")
    w = lower(spec, "decode", batch=16, context_len=512, plan=Plan(dp=4, ep=4))
    kinds = [op.op_kind for _, op in _layer_ops(w) if isinstance(op, Collective)]
    assert kinds == ["all_to_all", "all_to_all"]


def test_plan_that_does_not_divide_the_model_is_a_clear_error() -> None:
    spec = load_model_spec("llama2-7b")
    with pytest.raises(ConfigError, match="tp=3 does not divide 32 attention heads"):
        lower(spec, "decode", plan=Plan(tp=3))


def test_plan_shrinks_resident_bytes_per_chip() -> None:
    spec = load_model_spec("llama2-70b")
    one = lower(spec, "decode", batch=8)
    split = lower(spec, "decode", batch=8, plan=Plan(tp=8))
    assert split.resident_bytes["weights_bytes"] < one.resident_bytes["weights_bytes"] / 7
