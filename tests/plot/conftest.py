"""Plot tests: Agg backend, shared results, and a guard against leaked figures."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import hwsim  # noqa: E402


@pytest.fixture(autouse=True)
def no_open_figures() -> Iterator[None]:
    """Fail a test that leaves pyplot figures open (displays must not leak them)."""
    before = set(plt.get_fignums())
    yield
    leaked = set(plt.get_fignums()) - before
    plt.close("all")
    assert not leaked, f"test left {len(leaked)} figure(s) open"


@pytest.fixture
def ax() -> Iterator[object]:
    """One pyplot Axes, closed after the test."""
    fig, axes = plt.subplots()
    yield axes
    plt.close(fig)


def _decode(n_layers: int = 4) -> hwsim.Workload:
    return hwsim.load_workload("llama2-7b", phase="decode", batch=8, context_len=1024, n_layers=n_layers)


@pytest.fixture(scope="session")
def h100_result() -> hwsim.Result:
    return hwsim.simulate(_decode(), "h100-sxm")


@pytest.fixture(scope="session")
def tpu_result() -> hwsim.Result:
    return hwsim.simulate(_decode(), "tpu-v4")


@pytest.fixture(scope="session")
def tp8_result() -> hwsim.Result:
    """A multi-chip result: collectives on the tp link."""
    return hwsim.simulate(_decode(), "dgx-h100", plan=hwsim.Plan(tp=8))
