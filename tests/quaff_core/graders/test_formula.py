"""The `calculate_output` evaluator: arithmetic and a few functions, nothing else."""

from __future__ import annotations

import pytest

from quaff_core.graders.formula import FormulaError, evaluate, names, parse


def test_arithmetic_power_and_functions() -> None:
    tree = parse("0.5 * a + 0.5 * max(b, 0.2) ^ 2 - abs(-1) + sqrt(4)")
    assert names(tree) == {"a", "b"}
    assert evaluate(tree, {"a": 1.0, "b": 0.5}) == pytest.approx(0.5 + 0.125 - 1 + 2)


@pytest.mark.parametrize(
    "formula",
    [
        "__import__('os').system('true')",
        "a.__class__",
        "[a]",
        "(lambda: 1)()",
        "a if b else 1",
        "'text'",
        "open('/etc/passwd')",
        "a < b",
        "2 ** 1000",
        "x" * 1001,
    ],
)
def test_anything_else_is_refused(formula: str) -> None:
    with pytest.raises(FormulaError):
        evaluate(parse(formula), {"a": 1.0, "b": 2.0})
