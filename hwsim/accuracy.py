"""Published accuracy of quantized models: a lookup, never a model.

``hwsim/validation/data/published/accuracy.csv`` holds accuracy figures (perplexity,
zero-shot accuracy) that papers report for a model under a quantization method, each
beside the same paper's unquantized baseline, with the table it comes from. Sweeps and
plots can put a run's latency or energy against these as an accuracy proxy; a model or
scheme the table lacks has no proxy (nothing is interpolated or carried over from
another model, method or bit width).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

ACCURACY_CSV = Path(__file__).resolve().parent / "validation" / "data" / "published" / "accuracy.csv"


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    frame = pd.read_csv(ACCURACY_CSV, keep_default_na=False)
    # The papers print two decimals: the difference is rounded off float noise.
    frame["delta"] = (frame["value"] - frame["baseline"]).round(6)
    return frame


def published_accuracy(model: str | None = None, scheme: str | None = None,
                       metric: str | None = None) -> pd.DataFrame:
    """Published accuracy rows, optionally only those of ``model`` (an hwsim model name or
    the name the paper uses, case-insensitive), ``scheme`` (an hwsim precision scheme,
    e.g. ``"w4a16"``) and ``metric`` (``"wikitext2_ppl"``...).

    Returns
    -------
    pandas.DataFrame
        One row per published figure: ``value``, the paper's own ``baseline`` and
        ``delta = value - baseline`` (``lower_is_better`` says which way is worse), with
        ``source``, ``table``, ``url`` and ``note``. Empty where nothing was published.
    """
    frame = _table()
    keep = pd.Series(True, index=frame.index)
    if model is not None:
        name = model.lower()
        keep &= (frame["model"].str.lower() == name) | (frame["model_as_published"].str.lower() == name)
    if scheme is not None:
        keep &= frame["scheme"] == scheme
    if metric is not None:
        keep &= frame["metric"] == metric
    return frame[keep].reset_index(drop=True)


def accuracy_delta(model: str, scheme: str, metric: str = "wikitext2_ppl",
                   method: str | None = None) -> float | None:
    """The published change in ``metric`` for ``model`` under ``scheme`` (by ``method``,
    default the best one published), or ``None`` where no paper reports it."""
    rows = published_accuracy(model, scheme, metric)
    if method is not None:
        rows = rows[rows["method"] == method]
    if rows.empty:
        return None
    lower = rows["lower_is_better"].iloc[0] == "yes"
    return float(rows["delta"].min() if lower else rows["delta"].max())
