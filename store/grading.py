"""Graders as the service runs them: the sandbox limits from the settings (the data directory
hidden), the project's models as judges, and grader errors as 400s."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.orm import Session

from quaff_core.graders import registry
from quaff_core.graders.outcome import GraderConfigError
from quaff_core.graders.sandbox import SandboxLimits
from store.errors import InvalidRequestError
from store.grader_judge import NodeJudge
from store.settings import Settings


def sandbox_limits(settings: Settings) -> SandboxLimits:
    """The python-grader limits of the settings; the data directory is hidden from the code."""
    return SandboxLimits(
        cpu_seconds=settings.grader_cpu_seconds,
        wall_seconds=settings.grader_wall_seconds,
        memory_mb=settings.grader_memory_mb,
        hidden_paths=(str(settings.data_dir),),
    )


def grading_context(
    factory: Callable[[], AbstractContextManager[Session]], settings: Settings, project_id: str
) -> registry.GradingContext:
    """Judges are the project's models, asked through the inference nodes."""
    judge = NodeJudge(factory, settings, project_id)
    return registry.GradingContext(
        judge=judge, limits=sandbox_limits(settings), serves=judge.serves
    )


def checked_grader(
    spec: Any, context: registry.GradingContext, param: str = "grader"
) -> dict[str, Any]:
    """The grader object, or InvalidRequestError naming the field that cannot run here."""
    try:
        return registry.validate(spec, context, param)
    except GraderConfigError as exc:
        raise InvalidRequestError(exc.message, param=exc.param) from None
