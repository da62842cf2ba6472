"""Decoding strategy and KV policy specs: acceptance statistics, validation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload.decoding import (
    Beam,
    Greedy,
    Speculative,
    StreamingKV,
    TreeHeads,
    parse_decoding,
    parse_kv_policy,
    shared_prompt_tokens,
)


@pytest.mark.parametrize(("a", "k"), [(0.0, 4), (0.5, 3), (0.8, 7), (0.99, 5)])
def test_mean_accepted_length_is_the_geometric_closed_form(a: float, k: int) -> None:
    """E[L] = (1 - a^(k+1)) / (1 - a), and the pmf's mean and variance agree with it."""
    spec = Speculative(draft="llama2-7b", k=k, acceptance_rate=a)
    pmf = spec.length_pmf()
    assert pmf.sum() == pytest.approx(1.0)
    values = np.arange(1, k + 2)
    assert spec.mean_tokens_per_step == pytest.approx((1 - a ** (k + 1)) / (1 - a))
    assert float(pmf @ values) == pytest.approx(spec.mean_tokens_per_step)
    assert spec.var_tokens_per_step == pytest.approx(float(pmf @ values**2) - spec.mean_tokens_per_step**2)


def test_acceptance_one_always_takes_every_draft() -> None:
    """a = 1: every step yields k + 1 tokens, with no variance."""
    spec = Speculative(draft="llama2-7b", k=5, acceptance_rate=1.0)
    assert spec.mean_tokens_per_step == 6.0
    assert spec.var_tokens_per_step == 0.0


def test_measured_distribution_is_used_as_given() -> None:
    """A measured acceptance-length distribution gives its own mean."""
    tree = TreeHeads(kind="medusa", depth=3, tree_tokens=16, acceptance_lengths=(0.1, 0.2, 0.3, 0.4))
    assert tree.mean_tokens_per_step == pytest.approx(1 * 0.1 + 2 * 0.2 + 3 * 0.3 + 4 * 0.4)


@pytest.mark.parametrize(("value", "fragment"), [
    ({"kind": "speculative", "draft": "llama2-7b"}, "exactly one of acceptance_rate"),
    ({"kind": "speculative", "draft": "llama2-7b", "k": 2, "acceptance_lengths": [0.5, 0.5]}, "expected 3"),
    ({"kind": "speculative", "draft": "llama2-7b", "k": 1, "acceptance_lengths": [0.5, 0.6]}, "sum to 1"),
    ({"kind": "speculative", "acceptance_rate": 0.5}, "name a draft model"),
    ({"kind": "speculative", "draft": "x", "acceptance_rate": 1.5}, "decoding: speculative.acceptance_rate"),
    ({"kind": "medusa", "depth": 8, "tree_tokens": 4, "acceptance_rate": 0.5}, "cannot hold a path"),
    ({"kind": "beam", "n_beams": 0}, "n_beams"),
    ({"kind": "nucleus"}, "decoding"),
    (3, "expected one of greedy"),
])
def test_bad_specs_name_the_field(value: object, fragment: str) -> None:
    """A bad strategy is a ConfigError that names what is wrong."""
    with pytest.raises(ConfigError, match=fragment):
        parse_decoding(value)


def test_names_and_defaults() -> None:
    """None is greedy over the whole cache; a kind name gives its defaults."""
    assert parse_decoding(None) == Greedy()
    assert parse_decoding("beam") == Beam()
    assert parse_kv_policy("streaming") == StreamingKV()
    assert parse_kv_policy({"kind": "h2o", "heavy_tokens": 10, "recent_tokens": 6}).cap_tokens == 16


def test_shared_prompt_slots_are_prompt_plus_n_generated() -> None:
    """n sequences over one prompt hold the prompt's full blocks once and, each, the
    partial prompt block and their own tokens: prompt + n x generated, not n x both."""
    prompt, generated, n, block = 100, 50, 4, 16
    slots = shared_prompt_tokens(prompt, generated, n, block)
    assert slots == 6 * 16 + 4 * math.ceil((4 + 50) / 16) * 16
    assert slots < n * math.ceil((prompt + generated) / block) * block
    assert shared_prompt_tokens(prompt, generated, 1, block) == math.ceil(150 / 16) * 16


def test_decoding_only_for_requests() -> None:
    """A strategy on a phase that generates no tokens over steps is refused."""
    with pytest.raises(ConfigError, match="phase='request'"):
        hwsim.load_workload("llama2-7b", phase="decode", decoding="beam")
    with pytest.raises(ConfigError, match="kv_policy"):
        hwsim.load_workload("llama2-7b", phase="request", kv_policy={"kind": "streaming", "window": 3})
