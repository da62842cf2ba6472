"""Deterministic fuzzing: no bad input gives a traceback, no impossible value is accepted.

Mutations of every shipped chip and system file, of sweep specs, of ``Plan``,
``load_workload`` and ``hwsim.ops`` arguments, and of command lines (the mutations and
the judge are in ``tests/fuzzing.py``, the families in ``tests/fuzz_families.py``). The
larger run is ``bench/fuzz_inputs.py``.
"""

from __future__ import annotations

import random

import pytest

from tests.fuzz_families import FAMILIES
from tests.fuzzing import FAILURES, Case, format_report, judge, run_fuzz

#: Cases per family: 50 x 9 families, well under a minute on two cores.
N_PER_FAMILY = 50


@pytest.fixture(scope="module")
def report():
    return run_fuzz(FAMILIES, N_PER_FAMILY, seed=0)


def test_no_traceback_unnamed_error_or_impossible_value(report) -> None:
    """Every fuzzed input either works (and simulates to physical numbers) or is refused
    with a message naming its source and a dotted path."""
    assert not any(report.counts[f] for f in FAILURES), format_report(report)
    assert report.n_cases == N_PER_FAMILY * len(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_exercises_both_sides(report, family: str) -> None:
    """Each family has inputs that load (and are then judged by simulating them) and
    inputs that are refused, so the judge is not vacuous."""
    counts = report.by_family[family]
    assert counts["ok"] > 0 and counts["refused"] + counts["refused_later"] > 0, counts


def test_fuzzing_is_deterministic() -> None:
    """The same seed gives the same cases and the same outcomes."""
    def outcomes(seed: int) -> list[tuple[str, str]]:
        family = FAMILIES["arch_files"]
        return [(c.label, judge(c)[0]) for c in family(random.Random(f"{seed}:arch_files"), 6)]

    assert outcomes(3) == outcomes(3)
    assert outcomes(3) != outcomes(4)


def test_judge_flags_each_failure_kind() -> None:
    """The judge calls a raw exception a traceback, an error without a path unnamed,
    and an accepted impossible input or non-physical result impossible."""
    from hwsim.errors import ConfigError, SimulationError

    def case(build, check=lambda built: None, must_refuse=False) -> Case:
        return Case("t", ("src",), build, check, must_refuse)

    def raise_(exc):
        def f(*_):
            raise exc
        return f

    assert judge(case(raise_(KeyError("x"))))[0] == "traceback"
    assert judge(case(raise_(ConfigError(["something went wrong"]))))[0] == "unnamed"
    assert judge(case(raise_(ConfigError(["src: a.b: bad"]))))[0] == "refused"
    assert judge(case(lambda: 1, must_refuse=True))[0] == "impossible"
    assert judge(case(lambda: 1, raise_(SimulationError("inf"))))[0] == "impossible"
    assert judge(case(lambda: 1, raise_(ConfigError(["does not fit"]))))[0] == "refused_later"
    assert judge(case(lambda: 1))[0] == "ok"
