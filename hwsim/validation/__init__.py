"""Validation cases: measured or published figures hwsim must reproduce.

``run_validation()`` evaluates every shipped case against the presets and returns a
frame (group, case, measured, predicted, error); ``summarize()`` gives the per-group
mean absolute percentage error and worst row. ``hwsim validate`` prints both.
"""

from hwsim.validation.cases import Case, all_cases
from hwsim.validation.run import THRESHOLDS, run_validation, summarize

__all__ = ["THRESHOLDS", "Case", "all_cases", "run_validation", "summarize"]
