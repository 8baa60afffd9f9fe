"""`score_model` and `label_model`: a model this service serves reads the rendered messages and
answers a score or a label. The judge (how a model is asked) comes from the caller."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from quaff_core.graders.outcome import (
    GraderConfigError,
    Outcome,
    check_keys,
    failed,
    required_str,
)
from quaff_core.graders.templates import render

SCORE_FIELDS = {"type", "name", "model", "input", "range", "sampling_params"}
LABEL_FIELDS = {"type", "name", "model", "input", "labels", "passing_labels"}
SAMPLING = {"temperature", "top_p", "seed", "max_completions_tokens", "reasoning_effort"}
ROLES = ("user", "assistant", "system", "developer")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class JudgeReply:
    """The judge model's answer and the tokens it used."""

    text: str
    token_usage: int = 0


class JudgeError(RuntimeError):
    """The judge model could not be asked (no inference process, an error answer)."""


class Judge(Protocol):
    """Ask `model` the chat `messages` with OpenAI sampling parameters."""

    def __call__(
        self, model: str, messages: list[dict[str, str]], sampling: dict[str, Any]
    ) -> JudgeReply: ...


def _check_input(spec: dict[str, Any], path: str) -> None:
    messages = spec.get("input")
    if not isinstance(messages, list) or not messages:
        raise GraderConfigError(f"'{path}.input' must be a list of messages", f"{path}.input")
    for i, message in enumerate(messages):
        where = f"{path}.input.{i}"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise GraderConfigError(f"'{where}.role' must be one of {', '.join(ROLES)}", where)
        content_text(message.get("content"), where)


def content_text(content: Any, where: str) -> str:
    """A message's text: a string, or text parts (input_text, output_text); images refused."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise GraderConfigError(
                f"'{where}.content' must be text (images and audio cannot be judged here)",
                f"{where}.content",
            )
    return "\n".join(texts)


def validate_score(spec: dict[str, Any], path: str) -> None:
    """A score_model grader: messages, a two-number range, known sampling parameters."""
    check_keys(spec, SCORE_FIELDS, path)
    required_str(spec, "name", path)
    required_str(spec, "model", path)
    _check_input(spec, path)
    bounds = spec.get("range")
    if bounds is not None and (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, int | float) for b in bounds)
        or bounds[0] >= bounds[1]
    ):
        raise GraderConfigError(f"'{path}.range' must be [low, high]", f"{path}.range")
    sampling = spec.get("sampling_params") or {}
    check_keys(sampling, SAMPLING, f"{path}.sampling_params")
    if sampling.get("reasoning_effort") is not None:
        raise GraderConfigError(
            "reasoning_effort does not apply: the models served here do not reason in steps",
            f"{path}.sampling_params.reasoning_effort",
        )


def validate_label(spec: dict[str, Any], path: str) -> None:
    """A label_model grader: messages, labels, and passing labels among them."""
    check_keys(spec, LABEL_FIELDS, path)
    required_str(spec, "name", path)
    required_str(spec, "model", path)
    _check_input(spec, path)
    labels, passing = spec.get("labels"), spec.get("passing_labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise GraderConfigError(f"'{path}.labels' must be a list of strings", f"{path}.labels")
    if not isinstance(passing, list) or not passing or not set(passing) <= set(labels):
        raise GraderConfigError(
            f"'{path}.passing_labels' must be a non-empty subset of labels",
            f"{path}.passing_labels",
        )


def _messages(spec: dict[str, Any], names: dict[str, Any], rule: str) -> list[dict[str, str]]:
    rendered = [
        {
            "role": "system" if m["role"] == "developer" else m["role"],
            "content": render(content_text(m["content"], "input"), names),
        }
        for m in spec["input"]
    ]
    return [{"role": "system", "content": rule}, *rendered]


def _sampling(spec: dict[str, Any]) -> dict[str, Any]:
    params = dict(spec.get("sampling_params") or {})
    if "max_completions_tokens" in params:
        params["max_tokens"] = params.pop("max_completions_tokens")
    params.setdefault("max_tokens", 64)
    params.setdefault("temperature", 0.0)
    return params


def _answer(text: str, key: str) -> Any:
    """`{"result": ...}` if the reply is such JSON, else the reply itself."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return data.get(key, text) if isinstance(data, dict) else data


def grade_score(spec: dict[str, Any], names: dict[str, Any], judge: Judge) -> Outcome:
    """The number the judge answers, which must lie in `range` (default [0, 1])."""
    low, high = spec.get("range") or [0.0, 1.0]
    rule = f'Answer only with JSON {{"result": <a number from {low} to {high}>}}.'
    try:
        reply = judge(spec["model"], _messages(spec, names, rule), _sampling(spec))
    except JudgeError as exc:
        return failed("model_grader_server_error", str(exc))
    answer = _answer(reply.text, "result")
    found = _NUMBER.search(str(answer))
    if found is None or not low <= float(found.group()) <= high:
        return failed("model_grader_parse_error", f"no score in [{low}, {high}]: {reply.text!r}")
    return Outcome(float(found.group()), token_usage=reply.token_usage)


def grade_label(spec: dict[str, Any], names: dict[str, Any], judge: Judge) -> Outcome:
    """1 when the judge's label is a passing one, 0 for another label."""
    labels = spec["labels"]
    rule = f'Answer only with JSON {{"result": <one of {json.dumps(labels)}>}}.'
    try:
        reply = judge(spec["model"], _messages(spec, names, rule), {"temperature": 0.0})
    except JudgeError as exc:
        return failed("model_grader_server_error", str(exc))
    answer = str(_answer(reply.text, "result")).strip()
    label = answer if answer in labels else next((x for x in labels if x in answer), None)
    if label is None:
        return failed("model_grader_parse_error", f"no label of {labels}: {reply.text!r}")
    return Outcome(1.0 if label in spec["passing_labels"] else 0.0, token_usage=reply.token_usage)
