"""AttentionApprox settings and the workload transform: bad values refused by name,
cascades that never rise, per-layer fractions placed on their layers."""

from __future__ import annotations

import math

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload.ops import Attention
from hwsim.workload.pruning import AttentionApprox, approximate_attention, cascade_schedule, parse_approx


@pytest.mark.parametrize("settings, path", [
    ({"token_keep": 0.0, "selection": "topk"}, "token_keep"),
    ({"token_keep": 1.5, "selection": "topk"}, "token_keep"),
    ({"token_keep": math.nan, "selection": "topk"}, "token_keep"),
    ({"token_keep": True, "selection": "topk"}, "token_keep"),
    ({"head_keep": -0.2, "selection": "topk"}, "head_keep"),
    ({"token_keep": (0.5, 0.9), "selection": "topk"}, "must not rise"),
    ({"token_keep": (), "selection": "topk"}, "token_keep"),
    ({"score_keep": 0.0, "selection": "elsa"}, "score_keep"),
    ({"refetch_fraction": 1.5, "msb_bits": 4}, "refetch_fraction"),
    ({"msb_bits": -1}, "msb_bits"),
    ({"lsb_bits": 4}, "msb_bits > 0"),
    ({"selection": "magic"}, "selection"),
    ({"token_keep": 0.5}, "needs selection hardware"),
    ({"search_fraction": 0.0, "selection": "a3"}, "search_fraction"),
])
def test_bad_settings_are_refused_by_name(settings: dict[str, object], path: str) -> None:
    """Every impossible fraction or bit width is a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match="attention_approx") as err:
        parse_approx(settings)
    assert path in str(err.value)


def test_unknown_setting_and_non_mapping_are_refused() -> None:
    """A typo or a non-mapping is named, not a TypeError."""
    with pytest.raises(ConfigError, match="tokn_keep: unknown setting"):
        parse_approx({"tokn_keep": 0.5})
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_approx(0.5)


def test_cascade_schedule_has_the_mean_and_never_rises() -> None:
    """A geometric cascade from 1 whose mean is the target."""
    keep = cascade_schedule(0.3, 12)
    assert keep[0] == 1.0 and len(keep) == 12
    assert sum(keep) / 12 == pytest.approx(0.3, rel=1e-6)
    assert all(b <= a for a, b in zip(keep, keep[1:], strict=False))
    with pytest.raises(ConfigError):
        cascade_schedule(0.0, 12)
    with pytest.raises(ConfigError):
        cascade_schedule(0.5, 0)


def _model(n_layers: int = 2) -> hwsim.Workload:
    return hwsim.load_workload("llama2-7b", phase="decode", context_len=1024, n_layers=n_layers)


def test_keeping_everything_leaves_the_workload_itself() -> None:
    """A no-op approximation returns the very workload (same result bit for bit)."""
    w = _model()
    assert approximate_attention(w, AttentionApprox(selection="elsa")) is w
    assert approximate_attention(w, {}) is w
    assert hwsim.approximate_attention is approximate_attention and hwsim.AttentionApprox is AttentionApprox


def test_per_layer_fractions_land_on_their_layers() -> None:
    """Layer i's attention carries the i-th fraction; the model gets faster, never slower."""
    w = _model(3)
    pruned = approximate_attention(w, {"token_keep": [1.0, 0.5, 0.25], "selection": "topk"})
    keeps = [op.approx.token_keep for p in pruned.passes for s in p.segments for _, op in s.graph.ops()
             if isinstance(op, Attention)]
    assert keeps == [1.0, 0.5, 0.25]
    assert pruned.spec is None and "attention approximated" in pruned.warnings[-1]
    chip = hwsim.load_arch("h100-sxm")
    dense = hwsim.simulate(w, chip, fold=False)
    assert hwsim.simulate(pruned, chip).latency_s < dense.latency_s


def test_layer_count_mismatch_and_training_are_refused() -> None:
    """Per-layer fractions must cover the model's layers; training is not approximated."""
    with pytest.raises(ConfigError, match="per-layer fractions give 2 layers"):
        approximate_attention(_model(3), {"token_keep": [1.0, 0.5], "selection": "topk"})
    train = hwsim.load_workload("llama2-7b", phase="train", batch=1, seq_len=128, n_layers=1)
    with pytest.raises(ConfigError, match="training"):
        approximate_attention(train, {"token_keep": 0.5, "selection": "topk"})


def test_quantization_wider_than_the_elements_is_refused() -> None:
    """MSBs + LSBs cannot exceed the K/V element's bits."""
    with pytest.raises(ConfigError, match="exceed the bf16"):
        approximate_attention(_model(1), {"msb_bits": 12, "lsb_bits": 8, "selection": "topk"})
