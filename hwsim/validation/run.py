"""Evaluate validation cases and summarise them per group."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from hwsim.arch.load import list_archs, load_arch
from hwsim.arch.model import Chip
from hwsim.validation.cases import Case, all_cases

#: Per-group thresholds (issue #3): mean absolute percentage error and worst row, in %.
THRESHOLDS: dict[str, dict[str, float]] = {
    "h100 gemm bf16": {"mape_pct": 8.0, "max_pct": 25.0},
    "h100 gemm fp8/fp16": {"mape_pct": 8.0, "max_pct": 25.0},
    "h100 attention": {"mape_pct": 10.0},
    "h100 elementwise": {"mape_pct": 15.0},
    "h100 model prefill": {"mape_pct": 5.0, "max_pct": 10.0},
    "h100 model decode": {"mape_pct": 5.0, "max_pct": 10.0},
    "h100 training": {"mape_pct": 10.0, "max_pct": 10.0},
    "h100 energy": {"mape_pct": 15.0},
    "h100 sustained": {"mape_pct": 10.0},  # loops held at the power limit (energy.csv)
    "mlperf inference multi-chip": {"max_pct": 25.0},  # issue #4
    "scalesim cycles": {"max_pct": 1.0},
    "scalesim sram+dram bytes": {"max_pct": 5.0},
}


def run_validation(
    cases: Iterable[Case] | None = None, archs: dict[str, Chip] | None = None
) -> pd.DataFrame:
    """Predict every case; one row per case with ``error_pct`` = predicted/measured - 1."""
    archs = dict(archs or {})
    rows: list[dict[str, Any]] = []
    for case in all_cases() if cases is None else cases:
        chip = archs.get(case.arch)
        if chip is None and case.arch in list_archs():
            chip = archs[case.arch] = load_arch(case.arch)
        predicted = case.predict(chip)  # type: ignore[arg-type]  # builds its own chip if None
        rows.append({"group": case.group, "case": case.name, "arch": case.arch, "unit": case.unit,
                     "measured": case.measured, "predicted": predicted,
                     "error_pct": 100.0 * (predicted / case.measured - 1.0), "source": case.source})
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per group: rows, MAPE, worst |error|, its case, thresholds and whether they hold."""
    out = []
    for group, g in frame.groupby("group", sort=False):
        err = g["error_pct"].abs().reset_index(drop=True)
        worst = g.reset_index(drop=True).iloc[int(err.to_numpy().argmax())]
        limits = THRESHOLDS.get(str(group), {})
        mape, max_err = float(err.mean()), float(err.max())
        inf = float("inf")
        ok = mape <= limits.get("mape_pct", inf) and max_err <= limits.get("max_pct", inf)
        out.append({"group": group, "n_cases": len(g), "mape_pct": mape,
                    "max_abs_error_pct": max_err, "worst_case": worst["case"],
                    "mape_limit_pct": limits.get("mape_pct"), "max_limit_pct": limits.get("max_pct"),
                    "passes": ok})
    return pd.DataFrame(out)
