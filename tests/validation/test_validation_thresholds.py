"""`hwsim validate` holds issue #3's thresholds on check rows, says what it checks, and no
group regresses past where it is.

Groups that meet their targets are held to them. Groups that do not yet are held to
their current agreement (so a regression fails CI), and their issue targets are strict
xfails: when a change meets one, the xfail turns into a failure that asks for it to be
promoted. Fit rows are held apart: each must still reproduce what was fitted on it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.validation import THRESHOLDS, all_cases, run_validation, summarize
from hwsim.validation import run as validation_run
from hwsim.validation.report import validation_markdown

#: MAPE and worst-row ceilings (%) on check rows for groups still short of THRESHOLDS
#: (measured at the commit that adds them, rounded up by about one point).
REGRESSION_CEILINGS: dict[str, dict[str, float]] = {
    # issue #17's presets short of its 20 % target (docs/machines.md says why)
    "gaudi3 llm batch throughput (published)": {"mape_pct": 36.3, "max_pct": 70.7},
    "mi300x llm batch latency (published)": {"mape_pct": 54.7, "max_pct": 68.5},
    "cerebras per-user decode (published)": {"mape_pct": 21.8, "max_pct": 28.5},
    "groq per-user decode (published)": {"mape_pct": 22.1, "max_pct": 42.7},
    "blackwell trtllm-bench offline (published)": {"mape_pct": 41.0, "max_pct": 86.0},
    "xeon mlperf offline (published)": {"mape_pct": 27.1, "max_pct": 27.1},
    "l40s mlperf offline (published)": {"mape_pct": 24.9, "max_pct": 24.9},
    "trainium2 per-user decode (published)": {"mape_pct": 108.3, "max_pct": 108.3},
    "mi325x mlperf offline (published)": {"mape_pct": 21.4, "max_pct": 21.4},
    "snapdragon 8 gen 3 on-device llm (published)": {"mape_pct": 31.5, "max_pct": 44.3},
    # issue 14's multi-GPU serving target (15 %), not met (the one-GPU group meets its
    # 10 %): two static-batch rows disagree with their own tables by 2-5x, 70B fp16 on two
    # H100s is memory-tight and comes out 2.9x faster, Mixtral at TP8 +45 %
    # (docs/serving.md, "Multi-GPU residual (issue 17)").
    "serving throughput multi-gpu node": {"mape_pct": 40.0},
    # issue 17 item 6: research designs, several preset parameters unverified against their
    # papers (docs/research_designs.md says which and why the rows miss). Raised from
    # 157.7 / 400.5 by the Sanger-vs-A3 row alone: Sanger's selection stages now overlap
    # (its RTL's separate modules) while the unverified A3 preset stays as slow; 168.6 once
    # the attention blocks come from each design's small buffer.
    "research attention designs (published)": {"mape_pct": 169.0, "max_pct": 617.0},
}
#: Largest |error| (%) of a row that alone fitted a constant: it must still reproduce it
#: (else the constant needs refitting). Joint fits over many rows are judged by the check
#: rows of their groups instead.
FIT_ROW_MAX_PCT = 10.0
#: Groups whose every row was fitted on: there is nothing to check in them.
FIT_ONLY = ("h100 training", "h100 energy", "h100 gemm 2:4")  # 2:4: one stated figure (issue 16)


@functools.cache
def _frame() -> pd.DataFrame:
    return run_validation()


@functools.cache
def _summary() -> pd.DataFrame:
    return summarize(_frame()).set_index("group")


_COLUMN = {"mape_pct": "mape_pct", "max_pct": "max_abs_error_pct"}


def _meets(group: str, limits: dict[str, float]) -> bool:
    got = _summary().loc[group]
    return all(got[_COLUMN[k]] <= v for k, v in limits.items())


MET = [g for g in THRESHOLDS if g not in REGRESSION_CEILINGS]


@pytest.mark.parametrize("group", MET)
def test_group_meets_issue_threshold(group: str) -> None:
    """The group's check-row MAPE and worst row are within the issue's thresholds."""
    assert _meets(group, THRESHOLDS[group]), (group, _summary().loc[group].to_dict(), THRESHOLDS[group])
    assert _summary().loc[group, "status"] == "passes"


@pytest.mark.parametrize("group", sorted(REGRESSION_CEILINGS))
def test_group_does_not_regress(group: str) -> None:
    """A group short of its target is no worse than at the last recorded commit."""
    assert _meets(group, REGRESSION_CEILINGS[group]), (group, _summary().loc[group].to_dict())
    assert _summary().loc[group, "status"] == "FAILS"


@pytest.mark.parametrize("group", sorted(REGRESSION_CEILINGS))
@pytest.mark.xfail(strict=True, reason="issue #3/#17 target not met on check rows yet (see CHANGELOG)")
def test_group_target_pending(group: str) -> None:
    """The issue's target for a group that does not meet it yet (strict xfail)."""
    assert _meets(group, THRESHOLDS[group])


def test_every_case_evaluates_and_has_a_role() -> None:
    """Every shipped case produces a finite, positive prediction and is fit or check; a fit
    case names what was fitted on it."""
    frame = _frame()
    assert len(frame) >= 180
    assert (frame["predicted"] > 0).all() and frame["predicted"].notna().all()
    assert set(frame["role"]) == {"fit", "check"}
    assert (frame.loc[frame["role"] == "fit", "fitted"] != "").all()
    assert (frame.loc[frame["role"] == "check", "fitted"] == "").all()


def test_every_h100_group_with_more_than_its_fitted_rows_keeps_check_rows() -> None:
    """The split leaves check rows in every H100 group except those whose every row is the
    one measurement a constant was fitted on (named in FIT_ONLY)."""
    s = _summary()
    h100 = [g for g in s.index if str(g).startswith("h100 ") and "(published)" not in str(g)]
    for group in h100:
        if group in FIT_ONLY:
            assert s.loc[group, "n_check"] == 0 and s.loc[group, "status"] == "fit only"
        else:
            assert s.loc[group, "n_check"] > 0, group


def test_rows_that_alone_fitted_a_constant_still_reproduce_it() -> None:
    """A constant fitted on one row (host_dispatch_s, the energies, the fp8 fraction, the
    power limit) still reproduces that row (else the constant is stale)."""
    fit = _frame()[_frame()["role"] == "fit"]
    single = fit.groupby(["group", "fitted"]).filter(lambda g: len(g) == 1)
    assert len(single) >= 5
    for row in single.itertuples():
        assert abs(row.error_pct) <= FIT_ROW_MAX_PCT, (row.case, row.fitted, row.error_pct)


def test_summary_is_over_check_rows_only() -> None:
    """MAPE and worst row come from the check rows; the fit rows' MAPE is kept apart."""
    frame, s = _frame(), _summary()
    for group in ("h100 gemm bf16", "h100 attention", "h100 model decode"):
        g = frame[frame["group"] == group]
        check, fit = g[g["role"] == "check"], g[g["role"] == "fit"]
        assert s.loc[group, "mape_pct"] == pytest.approx(check["error_pct"].abs().mean())
        assert s.loc[group, "fit_mape_pct"] == pytest.approx(fit["error_pct"].abs().mean())
        assert s.loc[group, "worst_case"] in set(check["case"])


def test_a_group_without_a_threshold_is_recorded_never_passing() -> None:
    """No threshold: "recorded" (FA2 at 44 %, MLPerf BERT training at -45 %, A100
    all-reduce at 40 % do not read as passing)."""
    s = _summary()
    for group in s.index:
        if group not in THRESHOLDS and group not in FIT_ONLY:
            assert s.loc[group, "status"] == "recorded", group
    for group in ("h100 flash attention (published)", "mlperf training multi-chip (published)",
                  "a100 allreduce (published)"):
        assert s.loc[group, "status"] == "recorded"


def test_the_idle_power_case_is_gone() -> None:
    """Idle power is a fitted input (idle_power_w), not a case that returns it."""
    assert not [c for c in all_cases() if "idle" in c.name]


def test_status_follows_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold below a group's error FAILS, one above passes; `--strict` exits 1 only
    when some group FAILS."""
    frame = _frame()[_frame()["group"] == "scalesim cycles"]
    monkeypatch.setitem(validation_run.THRESHOLDS, "scalesim cycles", {"max_pct": 1e-6})
    assert summarize(frame).loc[0, "status"] == "FAILS"
    runner = CliRunner()
    failed = runner.invoke(main, ["validate", "--group", "scalesim cycles", "--strict"])
    assert failed.exit_code == 1 and "scalesim cycles" in failed.output
    monkeypatch.setitem(validation_run.THRESHOLDS, "scalesim cycles", {"max_pct": 1.0})
    assert summarize(frame).loc[0, "status"] == "passes"
    assert runner.invoke(main, ["validate", "--group", "scalesim cycles", "--strict"]).exit_code == 0


def test_json_carries_roles_and_status() -> None:
    """`hwsim validate --json`: every case has its role, every group its status."""
    out = CliRunner().invoke(main, ["validate", "--group", "h100 model", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {c["role"] for c in data["cases"]} == {"fit", "check"}
    assert all({"n_check", "n_fit", "status"} <= set(g) for g in data["summary"])


def test_committed_report_is_current() -> None:
    """docs/validation.md is what `hwsim validate --markdown` writes now."""
    path = Path(__file__).resolve().parents[2] / "docs" / "validation.md"
    assert path.read_text(encoding="utf-8") == validation_markdown(_frame()), (
        "regenerate with: hwsim validate --markdown docs/validation.md"
    )
