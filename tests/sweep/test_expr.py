"""The safe expression language of derived parameters and constraints."""

from __future__ import annotations

import pytest

from hwsim.sweep.expr import ExprError, parse_expr


def test_arithmetic_over_dotted_names():
    """Dotted names read from the environment; arithmetic follows Python's rules."""
    e = parse_expr("2 * compute_units.rows * compute_units.cols + 2 ** 3 - 16 // 5 % 2")
    assert e.names == {"compute_units.rows", "compute_units.cols"}
    assert e.evaluate({"compute_units.rows": 64, "compute_units.cols": 256}) == 2 * 64 * 256 + 8 - 1


def test_allowed_functions_and_comparisons():
    """Whitelisted functions and chained comparisons evaluate; comparisons are flagged."""
    assert parse_expr("max(a, 3) + sqrt(16)").evaluate({"a": 1}) == 7.0
    c = parse_expr("0 < area_mm2 <= 400")
    assert c.is_comparison and c.evaluate({"area_mm2": 400}) is True
    assert c.evaluate({"area_mm2": 401}) is False


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "open('x')", "a.b()", "'text'", "[1, 2]", "lambda: 1",
    "(1).real", "a if b else c", "x[0]", "True + 1", "",
])
def test_rejects_anything_else(text):
    """Calls outside the whitelist, strings, containers, subscripts and attributes of
    non-names are refused at parse time (a spec can never run code)."""
    with pytest.raises(ExprError):
        parse_expr(text)


def test_malformed_says_so():
    """A syntax error reports the expression."""
    with pytest.raises(ExprError, match="malformed"):
        parse_expr("2 * * rows")
