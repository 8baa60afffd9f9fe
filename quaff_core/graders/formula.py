"""`calculate_output` formulas of multi graders, evaluated without `eval`: a parsed expression
of numbers, grader names, + - * / ^ (power), parentheses and a few functions."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

MAX_LENGTH = 1000
MAX_EXPONENT = 100.0
FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class FormulaError(ValueError):
    """A formula that does not parse, uses something not allowed, or cannot be computed."""


def parse(formula: str) -> ast.expr:
    """The formula's expression tree, every node checked against the allowed set."""
    if len(formula) > MAX_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters")
    try:
        # `^` is power in OpenAI's formulas, with power's precedence (Python's `^` binds looser)
        tree = ast.parse(formula.strip().replace("^", "**"), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(f"the formula does not parse: {exc.msg}") from None
    for node in ast.walk(tree):
        _check(node)
    return tree


def _check(node: ast.AST) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise FormulaError(f"only numbers may appear as constants, not {node.value!r}")
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise FormulaError(f"only these functions may be called: {', '.join(FUNCTIONS)}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise FormulaError("only + - * / ^ are allowed between values")
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise FormulaError("only - and + are allowed before a value")
    elif not isinstance(node, ast.Name | ast.Load | ast.operator | ast.unaryop):
        raise FormulaError(f"'{type(node).__name__}' is not allowed in a formula")


def names(tree: ast.expr) -> set[str]:
    """The variable names a formula reads (function names excluded)."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def evaluate(tree: ast.expr, values: Mapping[str, float]) -> float:
    """The formula's value for `values`; FormulaError on a missing name or a maths error."""
    try:
        return float(_value(tree, values))
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise FormulaError(f"the formula cannot be computed: {exc}") from None


def _value(node: ast.expr, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise FormulaError(f"the formula names '{node.id}', which is no grader of it")
        return float(values[node.id])
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_value(node.operand, values))
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left, values), _value(node.right, values)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise FormulaError(f"exponents above {MAX_EXPONENT:g} are not allowed")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return float(FUNCTIONS[node.func.id](*(_value(a, values) for a in node.args)))
    raise FormulaError(f"'{type(node).__name__}' is not allowed in a formula")
