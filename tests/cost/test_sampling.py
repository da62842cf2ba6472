"""Token selection on the vector units: what each sampling option costs."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.cost.sampling import beam_cost, beam_reorder_bytes, sampling_cost


@pytest.fixture(scope="module")
def chip() -> hwsim.Chip:
    return hwsim.load_arch("h100-sxm")


def test_more_options_cost_more(chip: hwsim.Chip) -> None:
    """Each option adds passes over the logits: plain < top-k < top-k + top-p (a sort)."""
    plain = sampling_cost(chip, 64, 32000)[0]
    top_k = sampling_cost(chip, 64, 32000, top_k=50)[0]
    both = sampling_cost(chip, 64, 32000, top_k=50, top_p=0.9, temperature=0.7, repetition_penalty=1.1)[0]
    assert 0 < plain < top_k < both


def test_sampling_scales_with_rows_at_the_bandwidth_roof(chip: hwsim.Chip) -> None:
    """Large batches stream the logits at the memory roof: time grows with rows."""
    small = sampling_cost(chip, 256, 128256)[0]
    large = sampling_cost(chip, 2048, 128256)[0]
    assert large > 4 * small


def test_one_beam_is_greedy(chip: hwsim.Chip) -> None:
    """A beam of width 1 is the argmax in the LM head: no extra work."""
    assert beam_cost(chip, 8, 1, 32000) == (0.0, 0.0)
    assert beam_reorder_bytes(8, 1, 16, 1e5) == 0.0
    assert beam_cost(chip, 8, 4, 32000)[0] > 0
