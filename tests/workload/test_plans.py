"""Enumerating parallelism plans: every plan fills the system, legal ones carry no
reason, illegal ones say why, pointless inference options are skipped, and the memory
check rejects plans that do not fit."""

from __future__ import annotations

import functools

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload.memory import GIB
from hwsim.workload.plan import Plan
from hwsim.workload.plans import enumerate_plans, memory_rejections, plan_problems
from hwsim.workload.spec import ModelSpec


@functools.cache
def spec(name: str) -> ModelSpec:
    return hwsim.load_model_spec(name)


def _reason(plans: list[tuple[Plan, str | None]], **fields: object) -> str | None:
    """The reason given for the one plan whose fields match."""
    (reason,) = [r for p, r in plans if all(getattr(p, k) == v for k, v in fields.items())]
    return reason


@pytest.mark.parametrize("phase", ["prefill", "decode", "train"])
@pytest.mark.parametrize("n_chips", [1, 6, 8, 64, 256])
def test_every_plan_fills_the_system(phase: str, n_chips: int) -> None:
    """Each plan uses exactly the system's chips, and the list is sorted and repeatable."""
    plans = enumerate_plans(spec("llama2-70b"), phase, n_chips, batch=64)
    assert plans
    assert all(p.n_chips == n_chips for p, _ in plans)
    assert plans == enumerate_plans(spec("llama2-70b"), phase, n_chips, batch=64)
    assert len({p for p, _ in plans}) == len(plans)


def test_llama2_70b_on_8_chips_tp8_is_legal() -> None:
    """tp=8 splits LLaMA-2-70B's 64 heads and 8 KV heads evenly."""
    plans = enumerate_plans(spec("llama2-70b"), "decode", 8, batch=4)
    assert (Plan(tp=8), None) in plans
    assert _reason(plans, tp=1, pp=1, dp=8) == "batch 4 is not divisible by dp=8"


def test_reasons_for_illegal_plans() -> None:
    """Heads, batch and micro-batch divisibility each give a reason; uneven stages do not."""
    plans = enumerate_plans(spec("llama2-70b"), "train", 6, batch=4, microbatch_options=(1, 8),
                            recompute_options=(False,), zero_options=(0,))
    assert _reason(plans, tp=3, pp=1, microbatches=1) == "tp=3 does not divide 64 attention heads"
    assert _reason(plans, tp=2, pp=3, microbatches=1) is None  # stages of 27, 27 and 26 layers
    assert _reason(plans, tp=1, pp=6, microbatches=8) == "microbatches=8 exceed the per-replica batch 4"
    assert _reason(plans, dp=6, microbatches=1) == "batch 4 is not divisible by dp=6"
    assert _reason(plans, tp=2, pp=1, dp=3, microbatches=1) == "batch 4 is not divisible by dp=3"
    assert _reason(plans, tp=2, pp=1, dp=3, microbatches=8) == "batch 4 is not divisible by dp=3"
    assert _reason(plans, tp=6, pp=1, microbatches=8) == (
        "tp=6 does not divide 64 attention heads; microbatches=8 exceed the per-replica batch 4")
    small = enumerate_plans(spec("llama2-7b"), "prefill", 64, batch=64, microbatch_options=(1,))
    assert _reason(small, tp=64) == "tp=64 does not divide 32 attention heads"


def test_expert_parallel_reasons() -> None:
    """ep needs an MoE model and must divide its experts."""
    dense = enumerate_plans(spec("llama2-7b"), "decode", 8, batch=8, ep_options=(1, 4))
    assert _reason(dense, tp=1, pp=1, dp=8, ep=4) == "ep=4 needs an MoE model"
    moe = enumerate_plans(spec("mixtral-8x7b"), "decode", 16, batch=16)
    assert _reason(moe, tp=1, pp=1, dp=16, ep=8) is None
    assert _reason(moe, tp=1, pp=1, dp=16, ep=16) == "ep=16 does not divide 8 experts"


def test_inference_skips_pointless_options() -> None:
    """Inference lists no recompute, no ZeRO and no micro-batches without a pipeline."""
    plans = enumerate_plans(spec("llama2-70b"), "decode", 64, batch=64)
    assert not any(p.recompute or p.zero_stage for p, _ in plans)
    assert all(p.microbatches == 1 for p, _ in plans if p.pp == 1)
    assert any(p.microbatches > 1 for p, _ in plans if p.pp > 1)


def test_training_options_and_sequence_parallel_default() -> None:
    """Training tries recompute and ZeRO-1 (not with dp=1) and turns on SP with tp."""
    plans = enumerate_plans(spec("llama2-70b"), "train", 64, batch=1024)
    assert any(p.recompute for p, _ in plans) and any(p.zero_stage == 1 for p, _ in plans)
    assert not any(p.zero_stage and p.dp == 1 for p, _ in plans)
    assert all(p.sequence_parallel == (p.tp > 1) for p, _ in plans)
    off = enumerate_plans(spec("llama2-70b"), "train", 8, batch=8, sequence_parallel=False)
    assert not any(p.sequence_parallel for p, _ in off)


def test_context_parallel_must_split_the_sequence() -> None:
    """cp divides the sequence; a pipelined request is not modelled."""
    plans = enumerate_plans(spec("llama2-7b"), "train", 4, batch=4, seq_len=1000, cp_options=(1, 8),
                            microbatch_options=(1,), recompute_options=(False,), zero_options=(0,))
    assert all(p.cp == 1 for p, _ in plans)  # 8 does not divide 4 chips
    plans = enumerate_plans(spec("llama2-7b"), "train", 8, batch=1, seq_len=1001, cp_options=(8,),
                            microbatch_options=(1,), recompute_options=(False,), zero_options=(0,))
    assert _reason(plans, cp=8) == "cp=8 does not divide seq_len 1001"
    (problem,) = plan_problems(spec("llama2-7b"), "request", Plan(pp=2), batch=1)
    assert "pipelined requests are not modelled" in problem


def test_memory_rejections_add_what_does_not_fit() -> None:
    """On 80 GiB chips LLaMA-2-70B decode fits at tp=8 but not replicated on each chip."""
    s = spec("llama2-70b")
    plans = enumerate_plans(s, "decode", 8, batch=64)
    checked = memory_rejections(plans, s, "decode", 80 * GIB, "hbm", batch=64)
    assert len(checked) == len(plans)
    assert _reason(checked, tp=8, pp=1) is None
    reason = _reason(checked, tp=1, pp=1, dp=8)
    assert reason is not None and reason.startswith("dp8: 128.5 GiB of weights per chip exceeds hbm 80.0 GiB")
    structural = {p: r for p, r in plans if r}
    assert all(r == structural[p] for p, r in checked if p in structural)


def test_bad_arguments() -> None:
    """Unknown shape keys are a TypeError; unknown phases and encoder decoding a ConfigError."""
    with pytest.raises(TypeError, match="seqlen"):
        enumerate_plans(spec("llama2-7b"), "train", 8, batch=8, seqlen=4)
    with pytest.raises(ConfigError):
        enumerate_plans(spec("llama2-7b"), "serve", 8, batch=8)
    with pytest.raises(ConfigError):
        enumerate_plans(spec("bert-large"), "decode", 8, batch=8)
