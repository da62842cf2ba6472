"""Activation recomputation: none, selective (attention core only, Megatron-LM) and full,
with checkpoints every n layers; memory and time both change."""

from __future__ import annotations

import math

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload.memory import memory_per_chip
from hwsim.workload.ops import Attention

SPEC = hwsim.load_model_spec("llama2-7b")


def _plans() -> dict[str, hwsim.Plan]:
    return {"none": hwsim.Plan(), "selective": hwsim.Plan(recompute=True, recompute_granularity="selective"),
            "full": hwsim.Plan(recompute=True)}


@pytest.mark.parametrize("impl", ["naive", "flash"])
def test_selective_lies_between_none_and_full(impl: str) -> None:
    """Time: none <= selective <= full; memory: full <= selective <= none. With naive
    attention (a score matrix to keep) selective is strictly between on memory; with flash
    attention it saves nothing (no scores are kept anyway)."""
    w = hwsim.load_workload("llama2-7b", phase="train", batch=2, seq_len=512, n_layers=2, attention_impl=impl)
    times = {k: hwsim.simulate(w, "h100-sxm", plan=p).latency_s for k, p in _plans().items()}
    mems = {k: memory_per_chip(SPEC, "train", p, batch=2, seq_len=512, attention_impl=impl).activations_bytes
            for k, p in _plans().items()}
    assert times["none"] < times["selective"] < times["full"]
    assert mems["full"] < mems["selective"] <= mems["none"]
    if impl == "naive":
        assert mems["selective"] < mems["none"]
    else:
        assert mems["selective"] == mems["none"]


def test_selective_memory_is_korthikanti_without_the_score_term() -> None:
    """Per layer and micro-batch, selective keeps ``s*b*h*34`` bytes (16-bit) of the
    ``s*b*h*(34 + 5*a*s/h)`` (tp = 1), plus the fp32 logits."""
    s, b, layers = 512, 2, SPEC.num_hidden_layers
    h, a, v = SPEC.hidden_size, SPEC.num_attention_heads, SPEC.vocab_size
    plans = _plans()
    mem = {k: memory_per_chip(SPEC, "train", p, batch=b, seq_len=s, attention_impl="naive").activations_bytes
           for k, p in plans.items()}
    logits = 4.0 * s * b * v
    assert mem["selective"] == pytest.approx(layers * s * b * h * 34 + logits)
    assert mem["none"] == pytest.approx(layers * s * b * h * (34 + 5 * a * s / h) + logits)


def test_selective_recomputes_only_the_attention_core() -> None:
    w = hwsim.load_workload("llama2-7b", phase="train", batch=2, seq_len=512, n_layers=2)
    r = hwsim.simulate(w, "h100-sxm", plan=_plans()["selective"])
    recomputed = [rec for rec in r.schedule.records if rec.name.split(".")[-1].startswith("recompute_")]
    assert recomputed and all(isinstance(rec.op, Attention) for rec in recomputed)


@pytest.mark.parametrize("every", [1, 2, 4, 8, 32])
def test_checkpoint_every_n_layers_memory_closed_form(every: int) -> None:
    """Full recompute with a checkpoint every n layers keeps ceil(L/n) layer inputs plus n
    layers' full activations (and the logits); the work, and so the time, does not change."""
    s, b, layers = 512, 2, SPEC.num_hidden_layers
    h = SPEC.hidden_size
    plan = hwsim.Plan(recompute=True, recompute_every=every)
    mem = memory_per_chip(SPEC, "train", plan, batch=b, seq_len=s).activations_bytes
    per_layer = s * b * h * 34  # flash attention: no score term
    expect = math.ceil(layers / every) * 2 * s * b * h + every * per_layer + 4.0 * s * b * SPEC.vocab_size
    assert mem == pytest.approx(expect)


def test_checkpoint_spacing_keeps_the_time() -> None:
    w = hwsim.load_workload("llama2-7b", phase="train", batch=2, seq_len=512, n_layers=4)
    times = [hwsim.simulate(w, "h100-sxm", plan=hwsim.Plan(recompute=True, recompute_every=n)).latency_s
             for n in (1, 2, 4)]
    assert times[0] == times[1] == times[2]


def test_recompute_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="recompute_every applies to full recompute"):
        hwsim.Plan(recompute=True, recompute_granularity="selective", recompute_every=2)
    with pytest.raises(ConfigError, match="recompute_granularity"):
        hwsim.Plan(recompute=True, recompute_granularity="attention")
