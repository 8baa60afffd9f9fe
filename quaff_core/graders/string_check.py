"""`string_check`: eq, ne, like (contains) and ilike (contains, ignoring case); 1 or 0."""

from __future__ import annotations

from typing import Any

from quaff_core.graders.outcome import GraderConfigError, Outcome, check_keys, required_str
from quaff_core.graders.templates import render

OPERATIONS = ("eq", "ne", "like", "ilike")
FIELDS = {"type", "name", "input", "reference", "operation"}


def validate(spec: dict[str, Any], path: str) -> None:
    """Raise GraderConfigError unless `spec` is a runnable string_check grader."""
    check_keys(spec, FIELDS, path)
    for key in ("name", "input", "reference"):
        required_str(spec, key, path)
    if spec.get("operation") not in OPERATIONS:
        raise GraderConfigError(
            f"'{path}.operation' must be one of {', '.join(OPERATIONS)}", f"{path}.operation"
        )


def compare(operation: str, text: str, reference: str) -> bool:
    """The comparison itself."""
    if operation == "eq":
        return text == reference
    if operation == "ne":
        return text != reference
    if operation == "like":
        return reference in text
    return reference.lower() in text.lower()


def grade(spec: dict[str, Any], names: dict[str, Any]) -> Outcome:
    """1.0 when the rendered input passes the operation against the rendered reference."""
    text, reference = render(spec["input"], names), render(spec["reference"], names)
    return Outcome(1.0 if compare(spec["operation"], text, reference) else 0.0)
