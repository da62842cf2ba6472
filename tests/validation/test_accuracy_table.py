"""The published accuracy table: well-formed rows with sources, and a lookup that never extrapolates."""

from __future__ import annotations

import pandas as pd
import pytest

import hwsim
from hwsim.accuracy import ACCURACY_CSV
from hwsim.workload.precision import SCHEMES

COLUMNS = ["id", "model", "model_as_published", "scheme", "method", "weights", "activations", "group_size",
           "metric", "dataset", "value", "baseline", "lower_is_better", "source", "table", "url", "note"]


def test_rows_are_sourced_and_unique():
    """Every row has its table and URL, a known scheme and model, a unique id."""
    frame = pd.read_csv(ACCURACY_CSV, keep_default_na=False)
    assert list(frame.columns) == COLUMNS
    assert frame["id"].is_unique
    assert (frame["table"].str.startswith("Table")).all()
    assert frame["url"].str.startswith(("https://arxiv.org/abs/", "https://github.com/")).all()
    assert frame["scheme"].map(lambda s: s == "" or s in SCHEMES).all()
    models = set(hwsim.list_models())
    assert frame["model"].map(lambda m: m == "" or m in models).all()
    assert frame["lower_is_better"].isin(["yes", "no"]).all()


def test_lookup_returns_published_deltas():
    """Llama-2-7B W4A16 (AWQ Table 4): AWQ +0.13 perplexity, best GPTQ-style +0.16."""
    assert hwsim.accuracy_delta("llama2-7b", "w4a16-zp") == pytest.approx(0.13)
    assert hwsim.accuracy_delta("llama2-7b", "w4a16") == pytest.approx(0.16)
    assert hwsim.accuracy_delta("llama2-7b", "w4a16", method="RTN") == pytest.approx(0.26)
    rows = hwsim.published_accuracy("OPT-175B", "w8a8-static", metric="zero_shot_avg_acc_pct")
    assert rows["delta"].tolist() == [pytest.approx(-0.1)]


def test_lookup_never_extrapolates():
    """A model, scheme or metric no paper reports has no proxy."""
    assert hwsim.accuracy_delta("llama3-8b", "w4a16") is None
    assert hwsim.accuracy_delta("llama2-7b", "nvfp4") is None
    assert hwsim.accuracy_delta("llama2-7b", "w4a16", metric="zero_shot_avg_acc_pct") is None
    assert hwsim.published_accuracy("llama2-7b", "fp8").empty
