"""Memory per chip under a parallelism plan: closed forms for weights, KV cache,
activations (Korthikanti et al. 2022), gradients and optimizer state (ZeRO), offload,
the overflow messages, and monotonicity properties."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload.memory import (
    GIB,
    WORKSPACE_CAP_BYTES,
    ChipMemory,
    memory_per_chip,
    workspace_allowance_bytes,
)
from hwsim.workload.memory_fit import fit_problems, host_fit_problems
from hwsim.workload.plan import Plan
from hwsim.workload.spec import ModelSpec

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def spec(name: str) -> ModelSpec:
    return hwsim.load_model_spec(name)


def test_single_chip_weights_are_all_parameters() -> None:
    """One chip holds every parameter once, in the weight dtype."""
    for name in ("llama2-70b", "gpt3-175b", "mixtral-8x7b", "bert-large"):
        s = spec(name)
        mem = memory_per_chip(s, "prefill", Plan(), batch=1)
        assert mem.weights_bytes == s.param_count() * 2


def test_llama2_70b_tp8_weights() -> None:
    """LLaMA-2-70B's 137.9 GB of bf16 weights split eight ways: about 17.2 GB per chip."""
    s = spec("llama2-70b")
    assert s.param_count() * 2 == pytest.approx(137.9e9, rel=1e-3)
    mem = memory_per_chip(s, "decode", Plan(tp=8), batch=1)
    assert mem.weights_bytes == pytest.approx(17.2e9, rel=5e-3)


def test_last_pipeline_stage_holds_the_head() -> None:
    """With one layer per stage the busiest chip holds a layer plus the embedding or LM head."""
    s = spec("llama2-70b")
    mem = memory_per_chip(s, "prefill", Plan(pp=80), batch=1)
    layer_and_head = s.layer_param_count() + s.vocab_size * s.hidden_size + s.hidden_size
    assert mem.weights_bytes == layer_and_head * 2


def test_kv_cache_closed_form() -> None:
    """LLaMA-2-70B, batch 1, 4096 tokens: 80 * 4096 * 2 * 8 * 128 * 2 B = 1.34 GB."""
    s = spec("llama2-70b")
    full = 80 * 4096 * 2 * 8 * 128 * 2
    assert full == pytest.approx(1.34e9, rel=2e-3)

    def kv(plan: Plan, batch: int = 1) -> float:
        return memory_per_chip(s, "prefill", plan, batch=batch, prompt_len=4096).kv_cache_bytes

    assert kv(Plan()) == full
    assert kv(Plan(tp=8)) == full / 8  # one KV head per chip
    assert kv(Plan(tp=16)) == full / 8  # KV heads replicated: still one per chip
    assert kv(Plan(cp=2)) == full / 2
    assert kv(Plan(pp=4)) == full / 4
    assert kv(Plan(dp=4), batch=4) == full


def test_decode_cache_counts_the_new_token() -> None:
    """A decode step's cache holds the context and the token being generated."""
    s = spec("llama2-7b")
    mem = memory_per_chip(s, "decode", Plan(), batch=2, context_len=1023)
    assert mem.kv_cache_bytes == 32 * 2 * 1024 * 2 * 32 * 128 * 2


def test_encoder_keeps_no_kv_cache() -> None:
    """An encoder's prefill keeps no cache."""
    assert memory_per_chip(spec("bert-large"), "prefill", Plan(), batch=8).kv_cache_bytes == 0


def _korthikanti(s: ModelSpec, seq: int, micro: int, tp: int, sp: bool, flash: bool) -> float:
    """Activation bytes of one layer and micro-batch (Korthikanti et al. 2022, eq. 1-3)."""
    sbh, score = seq * micro * s.hidden_size, 5 * s.num_attention_heads * seq / s.hidden_size
    score = 0.0 if flash else score
    return sbh * (34 + score) / tp if sp else sbh * (10 + (24 + score) / tp)


@pytest.mark.parametrize("sp", [False, True])
@pytest.mark.parametrize("impl", ["naive", "flash"])
def test_training_activations_follow_korthikanti(sp: bool, impl: str) -> None:
    """1F1B stage 0 keeps min(pp, microbatches) micro-batches of its layers' activations."""
    s = spec("gpt3-175b")
    plan = Plan(tp=8, pp=4, microbatches=16, sequence_parallel=sp)
    mem = memory_per_chip(s, "train", plan, batch=16, seq_len=2048, attention_impl=impl)
    per_layer = _korthikanti(s, 2048, 1, 8, sp, impl == "flash")
    assert mem.activations_bytes == pytest.approx(96 / 4 * 4 * per_layer)


def test_gpipe_keeps_every_micro_batch() -> None:
    """GPipe keeps all 16 micro-batches on every stage; the last also keeps fp32 logits."""
    # Without GPT-3's learned position table stage 0 holds less than the last stage.
    s = spec("gpt3-175b").model_copy(update={"position_embeddings": 0})
    plan = Plan(tp=8, pp=4, microbatches=16, sequence_parallel=True, pipeline_schedule="gpipe")
    gpipe = memory_per_chip(s, "train", plan, batch=16, seq_len=2048)
    logits = 4 * 2048 * -(-s.vocab_size // 8)
    expected = 96 / 4 * 16 * _korthikanti(s, 2048, 1, 8, True, True) + logits
    assert gpipe.activations_bytes == pytest.approx(expected)


def test_recompute_keeps_layer_inputs() -> None:
    """Recompute keeps 2sbh per layer (/tp with SP) plus one layer's full activations."""
    s = spec("gpt3-175b")
    plan = Plan(tp=8, pp=4, microbatches=16, sequence_parallel=True, recompute=True)
    mem = memory_per_chip(s, "train", plan, batch=16, seq_len=2048)
    full = memory_per_chip(s, "train", plan.model_copy(update={"recompute": False}), batch=16, seq_len=2048)
    sbh = 2048 * s.hidden_size
    expected = 96 / 4 * 4 * 2 * sbh / 8 + _korthikanti(s, 2048, 1, 8, True, True)
    assert mem.activations_bytes == pytest.approx(expected)
    assert mem.activations_bytes < full.activations_bytes / 10


def test_gradients_and_optimizer_under_zero() -> None:
    """Grads are weight-sized, AdamW 12 B/param; ZeRO-1 splits the optimizer over dp, ZeRO-2
    also the gradients, ZeRO-3 also the weights (plus one gathered layer of workspace)."""
    s = spec("llama2-7b")
    kw = {"batch": 8, "seq_len": 1024}
    params = s.param_count()
    base = memory_per_chip(s, "train", Plan(dp=8), **kw)
    assert base.gradients_bytes == base.weights_bytes == params * 2
    assert base.optimizer_state_bytes == params * 12
    z1 = memory_per_chip(s, "train", Plan(dp=8, zero_stage=1), **kw)
    assert z1.optimizer_state_bytes == base.optimizer_state_bytes / 8
    assert z1.gradients_bytes == base.gradients_bytes
    z2 = memory_per_chip(s, "train", Plan(dp=8, zero_stage=2), **kw)
    assert z2.gradients_bytes == base.gradients_bytes / 8
    assert z2.weights_bytes == base.weights_bytes
    z3 = memory_per_chip(s, "train", Plan(dp=8, zero_stage=3), **kw, workspace_bytes=WORKSPACE_CAP_BYTES)
    assert z3.weights_bytes == base.weights_bytes / 8
    assert z3.workspace_bytes == WORKSPACE_CAP_BYTES + s.layer_param_count() * 2


def test_experts_split_over_ep() -> None:
    """Expert parallelism divides the expert weights, not attention or embeddings."""
    s = spec("mixtral-8x7b")
    d, f = s.hidden_size, s.ffn_size
    dense = memory_per_chip(s, "decode", Plan(dp=8), batch=8)
    split = memory_per_chip(s, "decode", Plan(dp=8, ep=8), batch=8)
    experts = s.num_hidden_layers * 8 * 3 * d * f * 2
    assert dense.weights_bytes - split.weights_bytes == pytest.approx(experts * 7 / 8)


def test_offload_moves_items_to_host() -> None:
    """Offloaded weights leave the chip but two layers stay as a streaming buffer."""
    s = spec("llama2-70b")
    on = memory_per_chip(s, "decode", Plan(tp=8), batch=8)
    off = memory_per_chip(s, "decode", Plan(tp=8, offload=("weights", "kv_cache")), batch=8)
    assert off.weights_bytes == off.kv_cache_bytes == 0
    assert off.offloaded_bytes == pytest.approx(on.weights_bytes + on.kv_cache_bytes)
    assert off.total_bytes < on.total_bytes
    double_buffer = 2 * s.layer_param_count() / 8 * 2 + 2 * on.kv_cache_bytes / 80
    assert off.workspace_bytes - on.workspace_bytes == pytest.approx(double_buffer, rel=1e-3)


def test_as_dict_and_total() -> None:
    """as_dict carries every field and the on-chip total; offloaded bytes are not in it."""
    mem = ChipMemory(weights_bytes=1, kv_cache_bytes=2, activations_bytes=3, gradients_bytes=4,
                     optimizer_state_bytes=5, workspace_bytes=6, offloaded_bytes=100)
    assert mem.total_bytes == 21
    assert mem.as_dict()["total_bytes"] == 21
    assert mem.as_dict()["offloaded_bytes"] == 100


def test_overflow_message_names_plan_item_level_and_amount() -> None:
    """LLaMA-2-70B at tp=2 on 80 GiB of HBM: the weights overflow, by 5.3 GiB."""
    s = spec("llama2-70b")
    plan = Plan(tp=2)
    mem = memory_per_chip(s, "decode", plan, batch=64, context_len=2048,
                          workspace_bytes=workspace_allowance_bytes(80 * GIB))
    problems = fit_problems(mem, 80 * GIB, "hbm", plan)
    assert problems == ["tp2: 64.2 GiB of weights per chip exceeds hbm 80.0 GiB minus 20.0 GiB of "
                        "KV cache and 1.0 GiB of workspace; short by 5.3 GiB"]
    assert fit_problems(memory_per_chip(s, "decode", Plan(tp=8), batch=64), 80 * GIB, "hbm", Plan(tp=8)) == []


def test_workspace_is_sized_from_the_chip() -> None:
    """The runtime allowance is 1 GiB on a large part and 1/64 of a small chip's memory
    (a Groq LPU's 230 MB keeps 3.6 MB, not 1 GiB); memory_per_chip adds it as given."""
    assert workspace_allowance_bytes(80 * GIB) == WORKSPACE_CAP_BYTES
    assert workspace_allowance_bytes(32 * GIB) == pytest.approx(0.5 * GIB)
    assert workspace_allowance_bytes(230e6) == pytest.approx(230e6 / 64)
    s = spec("llama2-7b")
    bare = memory_per_chip(s, "decode", Plan(tp=8), batch=1)
    assert bare.workspace_bytes == 0  # a workload alone knows no chip
    given = memory_per_chip(s, "decode", Plan(tp=8), batch=1, workspace_bytes=3.6e6)
    assert given.total_bytes - bare.total_bytes == pytest.approx(3.6e6)


def test_groq_rack_runs_a_model_that_fits_its_sram() -> None:
    """64 LPUs hold LLaMA-2-7B in int8 (~105 MB per chip with tp8 pp8): a plan runs, which
    a fixed 1 GiB workspace per chip (over four times its SRAM) made impossible."""
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=1, dtype="int8")
    search = hwsim.rank_plans(w, "groq-rack")
    assert search.ranked, search.reasons(3)
    assert all(p.memory is not None and p.memory.workspace_bytes < 4e6 for p in search.ranked)


def test_host_overflow_message() -> None:
    """Offloaded bytes beyond the host share say so, in GiB."""
    mem = ChipMemory(offloaded_bytes=300 * GIB)
    (msg,) = host_fit_problems(mem, 256 * GIB, Plan(tp=8, offload=("weights",)))
    assert re.fullmatch(r"tp8 offload:weights: 300\.0 GiB offloaded per chip exceeds host memory "
                        r"256\.0 GiB; short by 44\.0 GiB", msg)
    assert host_fit_problems(mem, 512 * GIB) == []


def test_bad_inputs_raise_config_errors() -> None:
    """An unknown phase, dtype or a non-positive length is a ConfigError."""
    s = spec("llama2-7b")
    for kw in ({"phase": "serve"}, {"dtype": "fp7"}, {"seq_len": 0}):
        args = {"phase": "train", "batch": 1} | kw
        with pytest.raises(ConfigError):
            memory_per_chip(s, plan=Plan(), **args)


MODELS = st.sampled_from(["llama2-7b", "llama2-70b", "llama3-8b", "gpt3-175b", "mixtral-8x7b"])
POW2 = st.sampled_from([1, 2, 4, 8, 16, 32, 64])
PHASE = st.sampled_from(["prefill", "decode", "train"])


@PROPERTY
@given(MODELS, PHASE, POW2, POW2)
def test_more_tp_never_increases_weights_or_kv(name: str, phase: str, tp_a: int, tp_b: int) -> None:
    """Splitting over more tensor-parallel chips never grows a chip's weights or KV cache."""
    lo, hi = sorted((tp_a, tp_b))
    a = memory_per_chip(spec(name), phase, Plan(tp=lo), batch=4)
    b = memory_per_chip(spec(name), phase, Plan(tp=hi), batch=4)
    assert b.weights_bytes <= a.weights_bytes
    assert b.kv_cache_bytes <= a.kv_cache_bytes


@PROPERTY
@given(MODELS, POW2, POW2, st.sampled_from([1, 2, 3]))
def test_more_dp_never_increases_zero_sharded_state(name: str, dp_a: int, dp_b: int, zero: int) -> None:
    """Under ZeRO, more data-parallel ranks never grow a chip's optimizer state."""
    lo, hi = sorted((dp_a, dp_b))
    a = memory_per_chip(spec(name), "train", Plan(dp=lo, zero_stage=zero), batch=64, seq_len=512)
    b = memory_per_chip(spec(name), "train", Plan(dp=hi, zero_stage=zero), batch=64, seq_len=512)
    assert b.optimizer_state_bytes <= a.optimizer_state_bytes
    assert b.gradients_bytes <= a.gradients_bytes


@PROPERTY
@given(MODELS, st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 8]), st.booleans())
def test_recompute_never_increases_activations(name: str, pp: int, mb: int, sp: bool) -> None:
    """Activation checkpointing never grows what a chip keeps for backward."""
    s = spec(name)
    if s.num_hidden_layers % pp:
        return
    plan = Plan(tp=2, pp=pp, microbatches=mb, sequence_parallel=sp)
    kw = {"batch": 8, "seq_len": 1024}
    full = memory_per_chip(s, "train", plan, **kw)
    kept = memory_per_chip(s, "train", plan.model_copy(update={"recompute": True}), **kw)
    assert kept.activations_bytes <= full.activations_bytes
