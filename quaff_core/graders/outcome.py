"""What grading returns (`Outcome`), its error flags (OpenAI's names), and the config error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# OpenAI's `metadata.errors` flags; an Outcome names at most one of them
ERROR_FLAGS = (
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)


@dataclass
class Outcome:
    """One sample's score; on a per-sample failure the score is 0 and `error` names the flag."""

    score: float
    error: str | None = None
    detail: str | None = None
    sub_scores: dict[str, float] = field(default_factory=dict)
    token_usage: int = 0

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in ERROR_FLAGS:
            raise ValueError(f"unknown grader error flag {self.error!r}; known: {ERROR_FLAGS}")


def failed(error: str, detail: str | None = None) -> Outcome:
    """A zero score with its error flag."""
    return Outcome(0.0, error=error, detail=detail)


class GraderConfigError(ValueError):
    """A grader object this service cannot run; `param` is the dotted path of the bad field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def required_str(spec: dict[str, Any], key: str, path: str) -> str:
    """`spec[key]`, which must be a string."""
    value = spec.get(key)
    if not isinstance(value, str):
        raise GraderConfigError(f"'{path}.{key}' must be a string", f"{path}.{key}")
    return value


def check_keys(spec: dict[str, Any], allowed: set[str], path: str) -> None:
    """Refuse a field the grader type does not have (nothing is silently ignored)."""
    for key in spec:
        if key not in allowed:
            raise GraderConfigError(f"Unknown field '{path}.{key}'", f"{path}.{key}")
