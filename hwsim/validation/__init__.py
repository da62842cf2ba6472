"""Validation cases: measured or published figures hwsim must reproduce.

``run_validation()`` evaluates every shipped case against the presets and returns a
frame (group, case, role, measured, predicted, error); ``summarize()`` gives the
per-group mean absolute percentage error and worst row over the *check* rows (a ``fit``
row reproduces a parameter fitted on it and checks nothing) and each group's status
against its threshold. ``hwsim validate`` prints both.
"""

from hwsim.validation.cases import Case
from hwsim.validation.registry import all_cases
from hwsim.validation.run import THRESHOLDS, fails, run_validation, summarize

__all__ = ["THRESHOLDS", "Case", "all_cases", "fails", "run_validation", "summarize"]
