"""A small, safe expression language for derived parameters and constraints.

Expressions are parsed with :mod:`ast` and evaluated by walking the tree; only numbers,
arithmetic (``+ - * / // % **``), comparisons, a few pure functions (``min``, ``max``,
``abs``, ``round``, ``int``, ``float``, ``sqrt``, ``log2``, ``ceil``, ``floor``) and names are
allowed. A name is a dotted path (``compute_units.rows``) or a metric (``area_mm2``);
nothing is looked up in Python's namespace, so a spec file can never run code.

>>> e = parse_expr("16384 / compute_units.rows")
>>> sorted(e.names), e.evaluate({"compute_units.rows": 64})
(['compute_units.rows'], 256.0)
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min, "max": max, "abs": abs, "round": round, "int": int, "float": float,
    "sqrt": math.sqrt, "log2": math.log2, "ceil": math.ceil, "floor": math.floor,
}


class ExprError(ValueError):
    """An expression that is malformed or uses something outside the allowed language."""


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _check(node: ast.AST, names: set[str]) -> None:
    """Raise :class:`ExprError` for anything outside the allowed language; collect names."""
    if isinstance(node, ast.Expression):
        _check(node.body, names)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExprError(f"only numbers are allowed as constants, not {node.value!r}")
    elif isinstance(node, ast.Name | ast.Attribute):
        dotted = _dotted(node)
        if dotted is None:
            raise ExprError("attribute access is allowed only on dotted parameter names")
        names.add(dotted)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left, names)
        _check(node.right, names)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, names)
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        for child in (node.left, *node.comparators):
            _check(child, names)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise ExprError(f"only the functions {', '.join(FUNCTIONS)} may be called (positional "
                            "arguments only)")
        for arg in node.args:
            _check(arg, names)
    else:
        raise ExprError(f"{type(node).__name__} is not allowed (arithmetic, comparisons and "
                        "parameter names only)")


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute):
        return env[_dotted(node)]  # type: ignore[index]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, env))
    if isinstance(node, ast.Compare):
        # ``&`` rather than ``and`` so that columns (numpy arrays) compare element-wise.
        left, out = _eval(node.left, env), None
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            holds = _COMPARE[type(op)](left, right)
            out = holds if out is None else out & holds
            left = right
        return out
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return FUNCTIONS[node.func.id](*(_eval(a, env) for a in node.args))


Compiled = Callable[[Mapping[str, Any]], Any]


def _compile(node: ast.AST) -> Compiled:
    """``node`` (checked by :func:`_check`) as a closure doing what :func:`_eval` does, in
    the same order with the same operators, without walking the tree on every call (a
    sweep evaluates its derived parameters and constraints at every point)."""
    if isinstance(node, ast.Expression):
        return _compile(node.body)
    if isinstance(node, ast.Constant):
        value = node.value
        return lambda env: value
    if isinstance(node, ast.Name | ast.Attribute):
        name = _dotted(node)
        return lambda env: env[name]  # type: ignore[index]
    if isinstance(node, ast.BinOp):
        binop, left, right = _BINOPS[type(node.op)], _compile(node.left), _compile(node.right)
        return lambda env: binop(left(env), right(env))
    if isinstance(node, ast.UnaryOp):
        unary, operand = _UNARY[type(node.op)], _compile(node.operand)
        return lambda env: unary(operand(env))
    if isinstance(node, ast.Compare):
        first = _compile(node.left)
        steps = [(_COMPARE[type(op)], _compile(comp))
                 for op, comp in zip(node.ops, node.comparators, strict=True)]

        def compare(env: Mapping[str, Any]) -> Any:
            left, out = first(env), None
            for cmp, comp in steps:
                right = comp(env)
                holds = cmp(left, right)
                out = holds if out is None else out & holds
                left = right
            return out

        return compare
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    fn, args = FUNCTIONS[node.func.id], [_compile(a) for a in node.args]
    return lambda env: fn(*(a(env) for a in args))


@dataclass(frozen=True)
class Expr:
    """A parsed expression: its source text, the names it reads, and its tree."""

    text: str
    names: frozenset[str]
    tree: ast.Expression = field(repr=False, compare=False)
    compiled: Compiled | None = field(default=None, repr=False, compare=False)

    @property
    def is_comparison(self) -> bool:
        """True if the whole expression is a comparison (a constraint)."""
        return isinstance(self.tree.body, ast.Compare)

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """The value of the expression with names taken from ``env``.

        Raises
        ------
        KeyError
            If a name is missing from ``env``.
        ArithmeticError
            For a division by zero or an overflow.
        """
        if self.compiled is not None:
            return self.compiled(env)
        return _eval(self.tree, env)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickled as its text (the closures are not picklable): parsed again on arrival.
        return parse_expr, (self.text,)

    def sides(self, env: Mapping[str, Any]) -> list[Any]:
        """Values of each side of a comparison (for messages that say why it failed)."""
        assert isinstance(self.tree.body, ast.Compare)
        return [_eval(n, env) for n in (self.tree.body.left, *self.tree.body.comparators)]


def parse_expr(text: str) -> Expr:
    """Parse ``text`` into an :class:`Expr`.

    Raises
    ------
    ExprError
        If it is not valid Python expression syntax or leaves the allowed language.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExprError("expected a non-empty expression string")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"malformed expression {text!r}: {exc.msg}") from None
    names: set[str] = set()
    _check(tree, names)
    return Expr(text.strip(), frozenset(names), tree, _compile(tree))
