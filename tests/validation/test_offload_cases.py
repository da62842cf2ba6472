"""The offloaded-inference check rows (FlexGen's T4 table) evaluate, are check rows with
their sources, and the all-on-GPU row checks the T4 preset within 10 %."""

from __future__ import annotations

import pytest

from hwsim.validation.offload import GROUP, offload_cases


def test_offload_rows_are_sourced_check_rows() -> None:
    cases = list(offload_cases())
    assert len(cases) == 2
    assert all(c.group == GROUP and c.role == "check" and not c.fitted for c in cases)
    assert all("batch_size_table.md" in c.source for c in cases)


def test_all_on_gpu_row_is_within_ten_percent() -> None:
    gpu = next(c for c in offload_cases() if "device:1.0" in c.name)
    assert gpu.predict(None) == pytest.approx(gpu.measured, rel=0.10)  # type: ignore[arg-type]


def test_streamed_weights_cost_at_least_the_stream() -> None:
    """OPT-30B with every weight on the host: 33 passes (prefill and 32 steps) each stream
    the 60 GB of weights over 12.89 GiB/s, so throughput is below batch x 32 / that time."""
    streamed = next(c for c in offload_cases() if "host:1.0" in c.name)
    stream_s = 33 * 29.97e9 * 2 / (12.89 * 2**30)
    assert streamed.predict(None) <= 4 * 32 / stream_s * 1.02  # type: ignore[arg-type]
