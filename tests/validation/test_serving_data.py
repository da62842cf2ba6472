"""The published serving results (serving.csv): every row is sourced and runnable on a
shipped preset, the split is by run and about a third, and the numbers obey the physics
a transcription error would break (more GPUs never lower offline throughput; a server
run under latency limits never beats the offline run of the same system)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

import hwsim
from hwsim.arch.system import load_system
from hwsim.validation.published import FOLDER

FRAME = pd.read_csv(FOLDER / "serving.csv", keep_default_na=False)
COLUMNS = ["id", "split", "scenario", "system", "n_chips", "gpu", "model", "model_as_published",
           "model_status", "dtype", "kv_dtype", "tp", "pp", "replicas", "framework", "scheduler",
           "max_batch", "kv_mem_fraction", "input_len", "output_len", "dataset", "n_requests",
           "rate_per_s", "ttft_limit_ms", "tpot_limit_ms", "latency_percentile", "metric", "value",
           "unit", "source_key", "source", "reference", "table", "read_from_chart", "note"]
UNITS = {"output_tokens_per_s": "tokens/s", "output_tokens_per_s_per_gpu": "tokens/s/GPU",
         "requests_per_s": "requests/s", "ttft_ms": "ms", "ttft_mean_ms": "ms", "itl_mean_ms": "ms",
         "ttft_p99_ms": "ms", "tpot_p99_ms": "ms", "tpot_mean_ms": "ms"}
RUN = ["source_key", "source", "scenario", "model", "system", "gpu", "n_chips", "dtype", "tp",
       "input_len", "output_len", "max_batch", "rate_per_s", "framework"]


def test_columns_ids_and_sources() -> None:
    """Documented columns, unique ids, a source and reference on every row, 20+ rows."""
    assert list(FRAME.columns) == COLUMNS
    assert len(FRAME) >= 20 and FRAME["id"].is_unique
    assert FRAME["source_key"].map(lambda k: bool(re.fullmatch(r"[A-Z][A-Za-z0-9-]*", k))).all()
    assert (FRAME["source"].str.len() > 10).all() and (FRAME["reference"].str.len() > 10).all()
    assert set(FRAME["read_from_chart"]) <= {"yes", "no"}


def test_values_are_positive_numbers_in_the_metric_unit() -> None:
    """Each value is a finite positive number; the unit is the metric's."""
    values = pd.to_numeric(FRAME["value"])
    assert np.isfinite(values).all() and (values > 0).all()
    assert (FRAME["unit"] == FRAME["metric"].map(UNITS)).all()


@pytest.mark.parametrize("system", sorted(set(FRAME["system"])))
def test_systems_are_presets_with_enough_chips(system: str) -> None:
    """Every system is a shipped preset holding the chips the run used."""
    chips = load_system(system).n_chips
    used = pd.to_numeric(FRAME.loc[FRAME["system"] == system, "n_chips"])
    assert used.max() <= chips and (used >= 1).all()
    if chips == 1:
        assert (used == 1).all()


def test_shipped_models_load_and_parallelism_adds_up() -> None:
    """Models marked shipped are hwsim workloads; stated TP x replicas = chips used."""
    for model in set(FRAME.loc[FRAME["model_status"].str.startswith("shipped"), "model"]):
        assert hwsim.load_workload(model, phase="decode", batch=1, context_len=128) is not None
    stated = FRAME[FRAME["tp"].str.isdigit() & FRAME["replicas"].str.isdigit()]
    assert (stated["tp"].astype(int) * stated["replicas"].astype(int) == stated["n_chips"].astype(int)).all()


def test_mlperf_rows_carry_the_server_limits() -> None:
    """MLPerf rows: 2,000 ms TTFT and 200 ms TPOT; server rows at the 99th percentile
    with their arrival rate."""
    mlperf = FRAME[FRAME["scenario"].str.startswith("mlperf")]
    assert len(mlperf) > 0
    assert (mlperf["ttft_limit_ms"].astype(int) == 2000).all()
    assert (mlperf["tpot_limit_ms"].astype(int) == 200).all()
    server = mlperf[(mlperf["scenario"] == "mlperf_server") & (mlperf["source_key"] != "MLP41-LEN")]
    assert (server["latency_percentile"].astype(int) == 99).all()
    assert (pd.to_numeric(server["rate_per_s"]) > 0).all()
    p99 = server[server["metric"].isin(["ttft_p99_ms", "tpot_p99_ms"])]
    limits = np.where(p99["metric"] == "ttft_p99_ms", 2000, 200)
    assert (pd.to_numeric(p99["value"]) <= limits).all()  # VALID runs met their limits


def test_split_is_by_run_and_about_a_third() -> None:
    """All rows of one run share a split; a third of the runs (rounded) are held out."""
    runs = FRAME.groupby(RUN)["split"].agg(set)
    assert all(len(s) == 1 for s in runs)
    held = sum(s == {"heldout"} for s in runs)
    assert held == round(len(runs) / 3)
    assert set(FRAME["split"]) == {"check", "heldout"}


def test_offline_throughput_never_falls_with_more_gpus() -> None:
    """Within one source, model, GPU, dtype and lengths, a larger TP group serves at
    least as many output tokens per second."""
    offline = FRAME[FRAME["scenario"] == "offline_max_throughput"].copy()
    offline["value"] = pd.to_numeric(offline["value"])
    offline["tp"] = offline["tp"].astype(int)
    for _, group in offline.groupby(["source_key", "model", "gpu", "dtype", "input_len", "output_len"]):
        values = group.sort_values("tp")["value"].to_numpy()
        assert np.all(np.diff(values) >= 0), group["id"].tolist()


def test_server_throughput_at_most_offline() -> None:
    """MLPerf: a server run under latency limits does not beat the same system's offline run."""
    mlperf = FRAME["scenario"].str.startswith("mlperf")
    tok = FRAME[mlperf & (FRAME["metric"] == "output_tokens_per_s")].copy()
    tok["value"] = pd.to_numeric(tok["value"])
    key = tok["source"].str.replace(r" (Offline|Server)$", "", regex=True)
    pairs = 0
    for _, group in tok.groupby([key, "model"]):
        by = dict(zip(group["scenario"], group["value"], strict=True))
        assert by["mlperf_server"] <= by["mlperf_offline"]
        pairs += 1
    assert pairs == 6


def test_mlperf_mean_output_length_matches_the_reference_set() -> None:
    """llama2-70b logs: tokens/s over samples/s is within 2 % of the reference run's
    294.45 output tokens per sample (a check on the transcribed pairs)."""
    rows = FRAME[FRAME["scenario"].str.startswith("mlperf") & (FRAME["model"] == "llama2-70b")
                 & (FRAME["source_key"] != "MLP41-LEN")]
    for _, group in rows.groupby("source"):
        by = dict(zip(group["metric"], pd.to_numeric(group["value"]), strict=False))
        assert math.isclose(by["output_tokens_per_s"] / by["requests_per_s"], 294.45, rel_tol=0.02)
