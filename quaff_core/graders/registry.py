"""Every grader type in one table: check a grader object, and grade samples with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quaff_core.graders import (
    model_graders,
    multi,
    python_grader,
    string_check,
    text_similarity,
)
from quaff_core.graders.model_graders import Judge
from quaff_core.graders.outcome import GraderConfigError, Outcome, failed
from quaff_core.graders.sandbox import SandboxLimits, unshare_works
from quaff_core.graders.templates import TemplateVariableError, bad_roots

TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")
_MODEL_TYPES = ("score_model", "label_model")


@dataclass(frozen=True)
class GradingContext:
    """What some graders need: a judge for the model graders, the sandbox's limits, and which
    model names this service serves (None: do not check)."""

    judge: Judge | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    serves: Callable[[str], bool] | None = None


def validate(spec: Any, context: GradingContext, path: str = "grader") -> dict[str, Any]:
    """The grader object if it runs here; GraderConfigError naming the field otherwise."""
    if not isinstance(spec, dict):
        raise GraderConfigError(f"'{path}' must be a grader object", path)
    kind = spec.get("type")
    if kind not in TYPES:
        raise GraderConfigError(f"'{path}.type' must be one of {', '.join(TYPES)}", f"{path}.type")
    if kind == "multi":
        multi.validate(spec, path, lambda member, where: validate(member, context, where))
        return spec
    {
        "string_check": string_check.validate,
        "text_similarity": text_similarity.validate,
        "python": python_grader.validate,
        "score_model": model_graders.validate_score,
        "label_model": model_graders.validate_label,
    }[kind](spec, path)
    _check_templates(spec, path)
    _check_runnable(spec, context, path)
    return spec


def _check_templates(spec: dict[str, Any], path: str) -> None:
    for key in ("input", "reference"):
        if isinstance(spec.get(key), str) and bad_roots(spec[key]):
            raise GraderConfigError(
                f"'{path}.{key}' references {bad_roots(spec[key])[0]}; templates may use "
                "item.* and sample.output_text / sample.output_json only",
                f"{path}.{key}",
            )


def _check_runnable(spec: dict[str, Any], context: GradingContext, path: str) -> None:
    kind = spec["type"]
    if kind == "python" and not unshare_works():
        raise GraderConfigError(
            "python graders cannot run on this server: it lacks Linux namespaces (`unshare`) "
            "to isolate them",
            f"{path}.type",
        )
    if kind in _MODEL_TYPES and context.serves is not None and not context.serves(spec["model"]):
        raise GraderConfigError(
            f"'{path}.model': '{spec['model']}' is not a model this service serves",
            f"{path}.model",
        )
    if kind in _MODEL_TYPES and context.judge is None:
        raise GraderConfigError(
            f"{kind} graders cannot run here: no model can judge in this context", f"{path}.type"
        )


def _one(spec: dict[str, Any], names: dict[str, Any], context: GradingContext) -> Outcome:
    try:
        if spec["type"] == "string_check":
            return string_check.grade(spec, names)
        if spec["type"] == "text_similarity":
            return text_similarity.grade(spec, names)
        if context.judge is None:
            return failed("model_grader_server_error", "no judge model in this context")
        if spec["type"] == "score_model":
            return model_graders.grade_score(spec, names, context.judge)
        return model_graders.grade_label(spec, names, context.judge)
    except TemplateVariableError as exc:
        return failed("invalid_variable_error", str(exc))


def grade_many(
    spec: dict[str, Any], namespaces: list[dict[str, Any]], context: GradingContext
) -> list[Outcome]:
    """One Outcome per template namespace (see `templates.namespace`), in order."""
    if spec["type"] == "python":
        return python_grader.grade_many(spec, namespaces, context.limits)
    if spec["type"] == "multi":
        named = multi.members(spec)
        columns = {name: grade_many(g, namespaces, context) for name, g in named.items()}
        return [
            multi.combine(spec, {name: column[i] for name, column in columns.items()})
            for i in range(len(namespaces))
        ]
    return [_one(spec, names, context) for names in namespaces]
