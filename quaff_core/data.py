"""Training-file rules: parse and validate JSONL datasets in pure Python (no torch import).

Three formats, one per file (see ../shared/API.md):
chat `{"messages": [{"role", "content", "weight"?}, ...]}`, `{"prompt", "completion"}`,
and `{"text"}`.
The API validates uploads with `validate_jsonl`; the trainer reads examples with `read_examples`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Format = Literal["chat", "prompt_completion", "text"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
FORMAT_KEYS: dict[str, frozenset[str]] = {
    "chat": frozenset({"messages"}),
    "prompt_completion": frozenset({"prompt", "completion"}),
    "text": frozenset({"text"}),
}
MESSAGE_KEYS = frozenset({"role", "content", "weight", "name", "tool_call_id"})
SUMMARY_ERRORS = 5
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class DatasetError:
    """One problem in a training file: 1-based line, message, and a stable machine code."""

    line: int
    message: str
    code: str = "invalid_example"

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Message:
    """One chat turn; `weight` 0 excludes an assistant turn from the loss."""

    role: str
    content: str
    weight: int = 1


@dataclass(frozen=True)
class Example:
    """One parsed training example; only the fields of its `format` are set."""

    format: Format
    line: int
    messages: tuple[Message, ...] = ()
    prompt: str = ""
    completion: str = ""
    text: str = ""

    @property
    def n_chars(self) -> int:
        """Characters of content in the example."""
        if self.format == "chat":
            return sum(len(m.content) for m in self.messages)
        return len(self.prompt) + len(self.completion) + len(self.text)


@dataclass
class ValidationReport:
    """Result of validating a file: format, example count, token-free statistics, every error."""

    format: Format | None = None
    n_examples: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    errors: list[DatasetError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file has at least one example and no errors."""
        return not self.errors and self.n_examples > 0

    def summary(self) -> str:
        """One line: the first few errors and how many more, or the format and example count."""
        if not self.errors:
            return f"{self.n_examples} {self.format or 'unknown'} examples"
        shown = "; ".join(str(e) for e in self.errors[:SUMMARY_ERRORS])
        more = len(self.errors) - SUMMARY_ERRORS
        return f"{shown}; and {more} more errors" if more > 0 else shown


class DatasetValidationError(ValueError):
    """A training file failed validation; `report` holds every error."""

    def __init__(self, report: ValidationReport, name: str = "dataset") -> None:
        self.report = report
        super().__init__(f"{name} is not a valid training file: {report.summary()}")


def _lines(source: bytes | str | os.PathLike[str] | Iterable[bytes]) -> Iterator[bytes]:
    """Yield raw lines (without the newline) from bytes, a file path or byte chunks."""
    if isinstance(source, bytes | bytearray):
        lines = bytes(source).split(b"\n")
        yield from lines[:-1] if lines[-1] == b"" else lines
        return
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"training file {str(path)!r} does not exist or is not a file")
        with path.open("rb") as fh:
            for raw in fh:
                yield raw.rstrip(b"\n")
        return
    if not isinstance(source, Iterable):
        raise TypeError(f"source must be bytes, a path or an iterable of bytes, not {source!r}")
    pending = b""
    for chunk in source:
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError(f"source chunks must be bytes, not {type(chunk).__name__}")
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _check_message(msg: Any, i: int, line: int) -> tuple[Message | None, list[DatasetError]]:
    """Validate one element of `messages`."""
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        return None, [DatasetError(line, f"{where} must be an object", "wrong_type")]
    errors = [
        DatasetError(line, f"{where} has unknown key {k!r}", "unknown_key")
        for k in sorted(set(msg) - MESSAGE_KEYS)
    ]
    role, content, weight = msg.get("role"), msg.get("content"), msg.get("weight", 1)
    if role not in ROLES:
        allowed = ", ".join(ROLES)
        errors.append(DatasetError(line, f"{where}.role {role!r} is not one of {allowed}", "role"))
    if not isinstance(content, str):
        kind = "missing" if "content" not in msg else f"a {type(content).__name__}"
        errors.append(
            DatasetError(line, f"{where}.content must be a string, got {kind}", "wrong_type")
        )
    elif not content.strip():
        errors.append(DatasetError(line, f"{where}.content is empty", "empty_content"))
    if isinstance(weight, bool) or weight not in (0, 1):
        errors.append(
            DatasetError(line, f"{where}.weight must be 0 or 1, got {weight!r}", "weight")
        )
    elif "weight" in msg and role != "assistant":
        errors.append(
            DatasetError(line, f"{where}.weight is only allowed on assistant messages", "weight")
        )
    for key in ("name", "tool_call_id"):
        if key in msg and not isinstance(msg[key], str):
            errors.append(DatasetError(line, f"{where}.{key} must be a string", "wrong_type"))
    if errors:
        return None, errors
    return Message(role=str(role), content=str(content), weight=int(weight)), []


def _parse_chat(obj: dict[str, Any], line: int) -> tuple[Example | None, list[DatasetError]]:
    """Validate a chat example."""
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        return None, [DatasetError(line, "messages must be a non-empty list", "wrong_type")]
    parsed: list[Message] = []
    errors: list[DatasetError] = []
    for i, msg in enumerate(messages):
        message, errs = _check_message(msg, i, line)
        errors.extend(errs)
        if message is not None:
            parsed.append(message)
    if errors:
        return None, errors
    assistants = [m for m in parsed if m.role == "assistant"]
    if not assistants:
        return None, [DatasetError(line, "no assistant message to train on", "no_assistant")]
    if all(m.weight == 0 for m in assistants):
        msg = "every assistant message has weight 0: nothing to train on"
        return None, [DatasetError(line, msg, "no_assistant")]
    return Example(format="chat", line=line, messages=tuple(parsed)), []


def _parse_strings(
    obj: dict[str, Any], fmt: Format, line: int
) -> tuple[Example | None, list[DatasetError]]:
    """Validate a prompt/completion or text example."""
    errors: list[DatasetError] = []
    for key in sorted(FORMAT_KEYS[fmt]):
        value = obj.get(key)
        if key not in obj:
            errors.append(DatasetError(line, f"missing key {key!r}", "missing_key"))
        elif not isinstance(value, str):
            kind = type(value).__name__
            errors.append(DatasetError(line, f"{key} must be a string, got {kind}", "wrong_type"))
        elif not value.strip():
            errors.append(DatasetError(line, f"{key} is empty", "empty_content"))
    if errors:
        return None, errors
    if fmt == "text":
        return Example(format="text", line=line, text=obj["text"]), []
    return Example(fmt, line, prompt=obj["prompt"], completion=obj["completion"]), []


def parse_example(obj: Any, line: int) -> tuple[Example | None, list[DatasetError]]:
    """Validate one decoded JSON value; returns the example or the errors found."""
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        return None, [DatasetError(line, f"expected a JSON object, got {kind}", "wrong_type")]
    matches = [fmt for fmt, keys in FORMAT_KEYS.items() if keys & obj.keys()]
    if not matches:
        keys = ", ".join(sorted(obj)) or "none"
        msg = (
            f"no known format: expected 'messages', 'prompt'/'completion' or 'text' (keys: {keys})"
        )
        return None, [DatasetError(line, msg, "unknown_format")]
    if len(matches) > 1:
        return None, [DatasetError(line, f"mixes formats {', '.join(matches)}", "mixed_formats")]
    fmt: Format = matches[0]  # type: ignore[assignment]
    unknown = sorted(set(obj) - FORMAT_KEYS[fmt])
    if unknown:
        msg = "unknown key {!r} in a {} example"
        return None, [DatasetError(line, msg.format(k, fmt), "unknown_key") for k in unknown]
    return _parse_chat(obj, line) if fmt == "chat" else _parse_strings(obj, fmt, line)


def _statistics(examples: list[Example]) -> dict[str, Any]:
    """Token-free statistics over the valid examples."""
    chars = [e.n_chars for e in examples]
    roles: Counter[str] = Counter(m.role for e in examples for m in e.messages)
    stats: dict[str, Any] = {
        "characters": sum(chars),
        "longest_example_chars": max(chars, default=0),
        "mean_example_chars": round(sum(chars) / len(chars), 1) if chars else 0.0,
    }
    if any(e.format == "chat" for e in examples):
        counts = [len(e.messages) for e in examples]
        stats["messages"] = sum(counts)
        stats["max_messages"] = max(counts, default=0)
        stats["role_counts"] = {role: roles.get(role, 0) for role in ROLES}
        stats["weight_zero_messages"] = sum(1 for e in examples for m in e.messages if not m.weight)
    return stats


def _scan(
    source: bytes | str | os.PathLike[str] | Iterable[bytes],
) -> tuple[ValidationReport, list[Example]]:
    """Validate every line; return the report and the valid examples."""
    report = ValidationReport()
    examples: list[Example] = []
    blank_lines: list[int] = []
    first_line = 0
    line = 0
    for line, raw in enumerate(_lines(source), start=1):
        if line == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip():
            blank_lines.append(line)
            continue
        report.errors.extend(DatasetError(n, "blank line", "blank_line") for n in blank_lines)
        blank_lines.clear()
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            report.errors.append(DatasetError(line, f"not UTF-8 text: {exc.reason}", "encoding"))
            continue
        except json.JSONDecodeError as exc:
            report.errors.append(DatasetError(line, f"invalid JSON: {exc.msg}", "invalid_json"))
            continue
        example, errors = parse_example(obj, line)
        report.errors.extend(errors)
        if example is None:
            continue
        if report.format is None:
            report.format, first_line = example.format, line
        elif example.format != report.format:
            msg = f"mixed formats: {example.format} here but {report.format} on line {first_line}"
            report.errors.append(DatasetError(line, msg, "mixed_formats"))
            continue
        examples.append(example)
    report.n_examples = len(examples)
    if not examples and not report.errors:
        report.errors.append(DatasetError(max(line, 1), "the file has no examples", "empty_file"))
    report.stats = _statistics(examples)
    report.stats["lines"] = line
    return report, examples


def validate_jsonl(source: bytes | str | os.PathLike[str] | Iterable[bytes]) -> ValidationReport:
    """Validate a JSONL training file (bytes, a path, or byte chunks) and report every problem."""
    return _scan(source)[0]


def read_examples(
    source: bytes | str | os.PathLike[str] | Iterable[bytes], *, name: str = "dataset"
) -> list[Example]:
    """Parse a training file into examples; raises DatasetValidationError listing its errors."""
    report, examples = _scan(source)
    if not report.ok:
        raise DatasetValidationError(report, name)
    return examples


def examples_from_dicts(rows: Iterable[Any]) -> list[Example]:
    """Validate in-memory rows (decoded JSON objects) as one file would be."""
    data = b"\n".join(json.dumps(row).encode("utf-8") for row in rows)
    return read_examples(data, name="examples")
