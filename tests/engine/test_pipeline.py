"""Pipeline play-out: closed forms for balanced GPipe and 1F1B pipelines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.engine.pipeline import StageTimes, bubble_fraction, play_pipeline

F, B = 1.0, 2.0


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@given(pp=st.integers(1, 8), m=st.integers(1, 16))
def test_balanced_training_pipeline_closed_form(schedule: str, pp: int, m: int) -> None:
    """No sends, equal stages: a step takes (m + p - 1)(F + B), for both schedules."""
    times = StageTimes(embed_s=0.0, layers_fwd_s=F, head_s=0.0, layers_bwd_s=B)
    makespan, busy = play_pipeline(times, pp, m, 0.0, schedule, train=True)
    assert makespan == pytest.approx((m + pp - 1) * (F + B))
    assert busy == pytest.approx(m * (F + B))
    assert 1 - busy / makespan == pytest.approx(bubble_fraction(pp, m))


@given(pp=st.integers(1, 8), m=st.integers(1, 16), send=st.floats(0, 0.5))
def test_inference_pipeline_closed_form(pp: int, m: int, send: float) -> None:
    """Forward only: the last micro-batch leaves after (p - 1)(F + send) + m F."""
    times = StageTimes(embed_s=0.0, layers_fwd_s=F, head_s=0.0)
    makespan, _ = play_pipeline(times, pp, m, send, "1f1b", train=False)
    assert makespan == pytest.approx((pp - 1) * (F + send) + m * F)


def test_more_microbatches_shrink_the_bubble() -> None:
    times = StageTimes(embed_s=0.0, layers_fwd_s=F, head_s=0.0, layers_bwd_s=B)
    per_mb = [play_pipeline(times, 4, m, 0.0, "1f1b", True)[0] / m for m in (1, 2, 4, 8, 32)]
    assert all(a > b for a, b in zip(per_mb, per_mb[1:], strict=False))


def test_embedding_and_head_land_on_the_end_stages() -> None:
    """The first stage also embeds, the last also runs the head: the slowest stage sets
    the pace of a long pipeline."""
    times = StageTimes(embed_s=0.5, layers_fwd_s=F, head_s=0.25)
    makespan, busy = play_pipeline(times, 3, 10, 0.0, "1f1b", train=False)
    assert busy == pytest.approx(10 * (F + 0.5))
    assert makespan >= busy
