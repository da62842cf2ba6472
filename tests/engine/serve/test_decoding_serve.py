"""Decoding strategies inside the serving loop: tokens, KV sharing, capacity, figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hwsim
from hwsim.engine.serve.decoding import SharedPromptKV
from hwsim.errors import ConfigError

SMALL = {"n_layers": 2}
DRAFT = {"kind": "speculative", "draft": "llama2-7b", "draft_n_layers": 1, "k": 4}


def _tokens_once(result: hwsim.ServeResult) -> None:
    counts = np.bincount(result.record.token_request, minlength=len(result.requests_in))
    assert (counts == result.requests_in.output_len).all()


def test_beam_width_one_serves_as_greedy() -> None:
    """One beam: the same iterations, times and energy as greedy serving."""
    requests = hwsim.Requests.poisson(12, 20.0, 96, 24, seed=3)
    greedy = hwsim.serve(requests, "h100-sxm", model="llama2-7b", **SMALL)
    beam = hwsim.serve(requests, "h100-sxm", model="llama2-7b", decoding={"kind": "beam", "n_beams": 1},
                       **SMALL)
    assert beam.output_tokens_per_s == greedy.output_tokens_per_s
    assert beam.energy_j == greedy.energy_j
    assert beam.iterations.equals(greedy.iterations)


@pytest.mark.parametrize("a", [0.0, 0.6, 1.0])
def test_speculation_yields_each_token_once(a: float) -> None:
    """Every request gets exactly its output tokens; a step yields 1 token at a = 0 and
    k + 1 (less the output cap) at a = 1; the measured mean tracks E[L]."""
    requests = hwsim.Requests.offline(6, 64, 41)
    result = hwsim.serve(requests, "h100-sxm", model="llama2-7b", decoding=DRAFT | {"acceptance_rate": a},
                         **SMALL)
    _tokens_once(result)
    got = result.metrics["accepted_tokens_per_step"]
    expected = (1 - a ** 5) / (1 - a) if a < 1 else 5.0
    if a == 0.0:
        assert got == 1.0
    elif a == 1.0:
        assert got == pytest.approx(40 / 8)  # 40 decode tokens in 8 steps of 5
    else:
        assert got == pytest.approx(expected, rel=0.2)
    assert 0 < result.metrics["draft_time_share"] < 1


def test_speculation_helps_a_lone_request() -> None:
    """At batch 1 a good draft speeds decode up; at acceptance 0 it slows it down."""
    requests = hwsim.Requests.offline(1, 64, 65)
    e2e = {}
    for a in (None, 0.0, 0.9):
        decoding = None if a is None else DRAFT | {"acceptance_rate": a}
        e2e[a] = hwsim.serve(requests, "h100-sxm", model="llama2-7b", decoding=decoding,
                             **SMALL).requests["e2e_s"].iloc[0]
    assert e2e[0.9] < e2e[None] < e2e[0.0]


def test_shared_prompt_blocks() -> None:
    """Four beams over a 160-token prompt with 63 generated tokens stored hold 10 shared
    blocks + 4 x 4 private ones, not 4 x 14."""
    kv = SharedPromptKV(100, 16, 1, n_sequences=4, prompt=np.array([160]))
    assert kv.grow(np.array([0]), np.array([160 + 63]))
    assert kv.used == 10 + 4 * math.ceil(63 / 16)


def test_beam_serving_uses_prompt_plus_n_generated_blocks() -> None:
    """In a serving run, a lone beam request's peak KV is its shared-prompt count."""
    requests = hwsim.Requests.offline(1, 160, 64)
    greedy = hwsim.serve(requests, "h100-sxm", model="llama2-7b", **SMALL)
    beam = hwsim.serve(requests, "h100-sxm", model="llama2-7b", decoding={"kind": "beam", "n_beams": 4},
                       **SMALL)
    assert greedy.iterations["kv_blocks_used"].max() == math.ceil((160 + 63) / 16)
    assert beam.iterations["kv_blocks_used"].max() == 10 + 4 * math.ceil(63 / 16)
    assert beam.requests["e2e_s"].iloc[0] > greedy.requests["e2e_s"].iloc[0]


def test_kv_policy_capacity() -> None:
    """Compression to half the bytes doubles the blocks; a cap lets long requests fit."""
    requests = hwsim.Requests.offline(2, 64, 8)
    full = hwsim.serve(requests, "h100-sxm", model="llama2-7b", **SMALL)
    half = hwsim.serve(requests, "h100-sxm", model="llama2-7b",
                       kv_policy={"kind": "full", "compression_ratio": 0.5}, **SMALL)
    blocks = full.config["pools"][0]["kv_blocks"]
    assert half.config["pools"][0]["kv_blocks"] in (2 * blocks, 2 * blocks + 1)
    assert any("compression" in w for w in half.warnings)


def test_bad_decoding_option_is_a_config_error() -> None:
    """An ill-formed strategy is refused with its field named."""
    with pytest.raises(ConfigError, match="serve: decoding"):
        hwsim.serve(hwsim.Requests.offline(1, 8, 8), "h100-sxm", decoding={"kind": "beam", "width": 2})
