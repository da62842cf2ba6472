"""Decoding strategies on a static request (``phase="request"``): the closed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hwsim
from hwsim.caches import CostCache
from hwsim.engine.decoding import DecodingModel
from hwsim.engine.iteration import ReplicaModel

ARCH = "h100-sxm"
SHAPE = {"phase": "request", "batch": 1, "prompt_len": 128, "new_tokens": 24, "n_layers": 4}
DRAFT = {"kind": "speculative", "draft": "llama2-7b", "draft_n_layers": 1, "k": 4}


def _run(**decoding: object) -> hwsim.Result:
    return hwsim.simulate(hwsim.load_workload("llama2-7b", **SHAPE, **decoding), ARCH)


def _model() -> tuple[ReplicaModel, CostCache]:
    chip = hwsim.load_arch(ARCH)
    spec = hwsim.load_model_spec("llama2-7b").model_copy(update={"num_hidden_layers": 4})
    cache = CostCache(chip)
    return ReplicaModel(spec, chip, hwsim.Plan(), cache), cache


def _verify_and_draft_s(steps: list[int], k: int) -> tuple[float, float]:
    """Target verify passes (k + 1 tokens) and draft passes at the given contexts, summed."""
    model, cache = _model()
    dm = DecodingModel(DRAFT | {"k": k, "acceptance_rate": 0.5}, None, model, cache)
    verify = draft = 0.0
    for context in steps:
        one, ctx = np.ones(1, dtype=np.int64), np.full(1, context + 1)
        q, kk, logits = dm.target_rows(one, ctx, 1, np.ones(1, dtype=bool))
        verify += model.run(q, kk, logits).latency_s
        draft += dm.side_cost(one, ctx, np.ones(1, dtype=bool), 1).time_s
    return verify, draft


def test_beam_width_one_is_greedy_bit_for_bit() -> None:
    """One beam is greedy decoding: identical latency, energy and TTFT."""
    greedy, beam = _run(), _run(decoding={"kind": "beam", "n_beams": 1})
    assert beam.latency_s == greedy.latency_s
    assert beam.energy_j == greedy.energy_j
    assert beam.ttft_s == greedy.ttft_s


def test_acceptance_zero_is_slower_by_the_draft_cost() -> None:
    """a = 0: one token per step as greedy, and the time is greedy's plus the draft's
    passes plus the verify's k extra tokens per step (nothing else)."""
    greedy, spec = _run(), _run(decoding=DRAFT | {"acceptance_rate": 0.0})
    n, prompt = SHAPE["new_tokens"], SHAPE["prompt_len"]
    assert spec.params["decode_steps"] == n
    assert spec.params["accepted_tokens_per_step"] == 1.0
    verify, draft = _verify_and_draft_s([prompt + i for i in range(n)], DRAFT["k"])
    assert spec.params["side_time_s"] - draft == pytest.approx(
        spec.ttft_s - greedy.ttft_s, rel=1e-9, abs=1e-12)  # the draft's prefill
    decode = spec.latency_s - spec.ttft_s
    assert decode == pytest.approx(verify + draft, rel=1e-9)
    greedy_decode = greedy.latency_s - greedy.ttft_s
    extra_verify = verify - greedy_decode
    assert spec.latency_s - greedy.latency_s == pytest.approx(spec.params["side_time_s"] + extra_verify)
    # Decode is memory bound at batch 1: verifying 5 tokens instead of 1 costs little.
    assert 0 <= extra_verify < 0.1 * greedy_decode


def test_acceptance_one_approaches_k_plus_one() -> None:
    """a = 1: ceil(n / (k + 1)) steps of k + 1 tokens; decode is faster than greedy by
    (k + 1) x less the draft's and the verify's extra cost, and never by more."""
    k, n, prompt = DRAFT["k"], SHAPE["new_tokens"], SHAPE["prompt_len"]
    greedy, spec = _run(), _run(decoding=DRAFT | {"acceptance_rate": 1.0})
    steps = math.ceil(n / (k + 1))
    assert spec.params["decode_steps"] == steps
    verify, draft = _verify_and_draft_s([prompt + i * (k + 1) for i in range(steps)], k)
    assert spec.latency_s - spec.ttft_s == pytest.approx(verify + draft, rel=1e-9)
    speedup = (greedy.latency_s - greedy.ttft_s) / (spec.latency_s - spec.ttft_s)
    ideal = n / steps  # tokens per step
    assert speedup < ideal
    assert speedup == pytest.approx(ideal * (greedy.latency_s - greedy.ttft_s) / n * steps / (verify + draft))


def test_more_acceptance_is_never_slower() -> None:
    """Raising the acceptance rate never slows a request down."""
    times = [_run(decoding=DRAFT | {"acceptance_rate": a}).latency_s for a in (0.0, 0.4, 0.7, 0.9, 1.0)]
    assert all(b <= a for a, b in zip(times, times[1:], strict=False))


def test_beams_hold_prompt_plus_n_generated() -> None:
    """The resident KV of n beams is prompt + n x generated, not n x (prompt + generated)."""
    greedy = hwsim.load_workload("llama2-7b", **SHAPE)
    beam = hwsim.load_workload("llama2-7b", **SHAPE, decoding={"kind": "beam", "n_beams": 4})
    per_token = greedy.resident_bytes["kv_cache_bytes"] / (128 + 24)
    assert beam.resident_bytes["kv_cache_bytes"] == pytest.approx(per_token * (128 + 4 * 32))
    assert beam.resident_bytes["kv_cache_bytes"] < 4 * greedy.resident_bytes["kv_cache_bytes"]


def test_beams_and_sampling_cost_more_than_greedy() -> None:
    """n beams run n rows per step plus their top-k; sampling adds its kernels."""
    greedy = _run().latency_s
    assert _run(decoding={"kind": "beam", "n_beams": 4}).latency_s > greedy
    assert _run(decoding={"kind": "sampling", "top_p": 0.9}).latency_s > greedy


def test_tree_heads_speed_up_with_acceptance() -> None:
    """Medusa and EAGLE verify a tree; with good acceptance they beat greedy."""
    greedy = _run().latency_s
    for kind in ("medusa", "eagle"):
        run = _run(decoding={"kind": kind, "depth": 4, "tree_tokens": 32, "acceptance_rate": 0.8})
        assert run.latency_s < greedy
        assert 0 < run.params["draft_time_share"] < 1


def test_streaming_cap_shortens_long_decodes() -> None:
    """A window much shorter than the context makes decode attention cheaper."""
    shape = SHAPE | {"prompt_len": 8192, "new_tokens": 8}
    full = hwsim.simulate(hwsim.load_workload("llama2-7b", **shape), ARCH)
    capped = hwsim.simulate(hwsim.load_workload("llama2-7b", **shape, kv_policy={
        "kind": "streaming", "sink_tokens": 4, "window_tokens": 252}), ARCH)
    assert capped.ttft_s == pytest.approx(full.ttft_s)
    assert capped.latency_s < full.latency_s
    assert any("kv_policy" in w for w in capped.warnings)


def test_lookahead_has_no_side_work() -> None:
    """Lookahead decoding verifies its own guesses: no draft time, and with a long
    enough accepted length it beats greedy."""
    run = _run(decoding={"kind": "lookahead", "depth": 4, "tree_tokens": 40, "acceptance_rate": 0.6})
    assert run.params["draft_time_share"] == 0.0
    assert run.params["side_time_s"] == 0.0
    assert run.latency_s < _run().latency_s
