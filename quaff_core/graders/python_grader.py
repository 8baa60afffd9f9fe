"""`python`: the user's `grade(sample, item) -> float`, run in the sandbox, a batch at a time."""

from __future__ import annotations

import ast
from typing import Any

from quaff_core.graders.outcome import (
    GraderConfigError,
    Outcome,
    check_keys,
    failed,
    required_str,
)
from quaff_core.graders.sandbox import SandboxLimits, SandboxUnavailableError, run_batch

FIELDS = {"type", "name", "source", "image_tag"}
MAX_SOURCE = 256 * 1024
_FLAGS = {
    "runtime": "python_grader_runtime_error",
    "unresponsive": "unresponsive_reward_error",
    "server": "python_grader_server_error",
}


def validate(spec: dict[str, Any], path: str) -> None:
    """The source must parse and define a top-level `grade` function."""
    check_keys(spec, FIELDS, path)
    required_str(spec, "name", path)
    source, param = required_str(spec, "source", path), f"{path}.source"
    if spec.get("image_tag") is not None and not isinstance(spec["image_tag"], str):
        raise GraderConfigError(f"'{path}.image_tag' must be a string", f"{path}.image_tag")
    if len(source) > MAX_SOURCE:
        raise GraderConfigError(f"'{param}' is longer than {MAX_SOURCE} characters", param)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        message = f"'{param}' does not parse: line {exc.lineno}: {exc.msg}"
        raise GraderConfigError(message, param) from None
    if not any(isinstance(n, ast.FunctionDef) and n.name == "grade" for n in tree.body):
        raise GraderConfigError(f"'{param}' must define `def grade(sample, item)`", param)


def case(names: dict[str, Any]) -> dict[str, Any]:
    """What `grade` receives: OpenAI's `sample` (output_text, output_json) and the item."""
    sample = {**names["sample"], "output_tools": [], "choices": []}
    return {"sample": sample, "item": names["item"]}


def grade_many(
    spec: dict[str, Any], namespaces: list[dict[str, Any]], limits: SandboxLimits
) -> list[Outcome]:
    """One sandboxed run for every sample; a raising sample gets its traceback as its error."""
    try:
        results = run_batch(spec["source"], [case(n) for n in namespaces], limits)
    except SandboxUnavailableError as exc:
        return [failed("python_grader_server_error", str(exc))] * len(namespaces)
    outcomes = []
    for result in results:
        if "score" in result:
            outcomes.append(Outcome(float(result["score"])))
        else:
            flag = _FLAGS.get(str(result.get("kind")), "python_grader_server_error")
            outcomes.append(failed(flag, str(result.get("error"))))
    return outcomes
