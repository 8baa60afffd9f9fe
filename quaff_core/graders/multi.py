"""`multi`: several named graders, combined per sample by a `calculate_output` formula."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quaff_core.graders import formula
from quaff_core.graders.outcome import GraderConfigError, Outcome, check_keys, required_str

FIELDS = {"type", "name", "graders", "calculate_output"}


def members(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The named graders: OpenAI's `{"name": grader, ...}`, or one grader under its name."""
    graders = spec["graders"]
    if isinstance(graders, dict) and isinstance(graders.get("type"), str):
        return {str(graders.get("name")): graders}
    return dict(graders)


def validate(
    spec: dict[str, Any], path: str, validate_member: Callable[[Any, str], object]
) -> None:
    """The graders (not multi again) and a formula that reads only their names."""
    check_keys(spec, FIELDS, path)
    required_str(spec, "name", path)
    graders = spec.get("graders")
    if not isinstance(graders, dict) or not graders:
        raise GraderConfigError(
            f"'{path}.graders' must be an object of named graders", f"{path}.graders"
        )
    for name, member in members(spec).items():
        if isinstance(member, dict) and member.get("type") == "multi":
            raise GraderConfigError("multi graders do not nest", f"{path}.graders.{name}")
        validate_member(member, f"{path}.graders.{name}")
    source, param = required_str(spec, "calculate_output", path), f"{path}.calculate_output"
    try:
        tree = formula.parse(source)
    except formula.FormulaError as exc:
        raise GraderConfigError(f"'{param}': {exc}", param) from None
    unknown = formula.names(tree) - set(members(spec))
    if unknown:
        raise GraderConfigError(
            f"'{param}' names {', '.join(sorted(unknown))}, which no grader of it is called",
            param,
        )


def combine(spec: dict[str, Any], subs: dict[str, Outcome]) -> Outcome:
    """The formula over the sub-scores; a failed sub-grader counts 0 and its flag is kept."""
    scores = {name: o.score for name, o in subs.items()}
    first_error = next((o for o in subs.values() if o.error), None)
    tokens = sum(o.token_usage for o in subs.values())
    try:
        value = formula.evaluate(formula.parse(spec["calculate_output"]), scores)
    except formula.FormulaError as exc:
        return Outcome(0.0, "formula_parse_error", str(exc), scores, tokens)
    error = first_error.error if first_error else None
    detail = first_error.detail if first_error else None
    return Outcome(value, error, detail, scores, tokens)
