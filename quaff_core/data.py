"""Training-file rules: parse and validate JSONL datasets in pure Python (no torch import).

Three formats, one per file (see ../shared/API.md):
chat `{"messages": [{"role", "content", "weight"?}, ...]}`, `{"prompt", "completion"}`,
and `{"text"}`.
The API validates uploads with `validate_jsonl`; the trainer reads examples with `read_examples`.
Validation runs in bounded memory: lines are read one at a time and bounded in length, each
line's JSON in nesting depth and number size, and only the first `MAX_KEPT_ERRORS` errors are
kept (with a count of all of them); examples are kept only when `read_examples` asks for them.
"""

from __future__ import annotations

import json
import math
import os
import re
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
MAX_KEPT_ERRORS = 100
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _LineTooLong(bytes):
    """Stands for a line longer than MAX_LINE_BYTES (its bytes were skipped, not kept)."""


class _BadLine(ValueError):
    """A line whose JSON passes a limit or holds a lone surrogate."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


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
    n_errors: int = 0

    @property
    def ok(self) -> bool:
        """True when the file has at least one example and no errors."""
        return not self.n_errors and not self.errors and self.n_examples > 0

    def add_error(self, error: DatasetError) -> None:
        """Count an error; keep it while fewer than MAX_KEPT_ERRORS are kept."""
        self.n_errors += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)

    def summary(self) -> str:
        """One line: the first few errors and how many more, or the format and example count."""
        total = max(self.n_errors, len(self.errors))
        if not total:
            return f"{self.n_examples} {self.format or 'unknown'} examples"
        shown = "; ".join(str(e) for e in self.errors[:SUMMARY_ERRORS])
        more = total - min(SUMMARY_ERRORS, len(self.errors))
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
        for line in lines[:-1] if lines[-1] == b"" else lines:
            yield _LineTooLong() if len(line) > MAX_LINE_BYTES else line
        return
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"training file {str(path)!r} does not exist or is not a file")
        with path.open("rb") as fh:
            yield from _bounded_lines(fh)
        return
    if not isinstance(source, Iterable):
        raise TypeError(f"source must be bytes, a path or an iterable of bytes, not {source!r}")
    pending = b""
    skipping = False
    for chunk in source:
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError(f"source chunks must be bytes, not {type(chunk).__name__}")
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if skipping:  # the tail of a line already reported as too long
                skipping = False
                continue
            yield _LineTooLong() if len(line) > MAX_LINE_BYTES else line
        if len(pending) > MAX_LINE_BYTES:
            if not skipping:
                yield _LineTooLong()
            pending, skipping = b"", True
    if pending and not skipping:
        yield pending


def _bounded_lines(fh: Any) -> Iterator[bytes]:
    """Lines of a binary file, at most MAX_LINE_BYTES each read (longer ones are skipped)."""
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = fh.readline(1024 * 1024)
            yield _LineTooLong()
            continue
        yield raw.rstrip(b"\n")


def _number(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadLine(f"a number has more than {MAX_NUMBER_CHARS} characters", "number_too_large")
    return text


def _float(text: str) -> float:
    value = float(_number(text))
    if not math.isfinite(value):
        raise _BadLine(f"the number {text[:20]} is out of range", "number_too_large")
    return value


def _constant(text: str) -> Any:
    raise _BadLine(f"{text} is not a JSON value", "invalid_json")


def _check_tree(value: Any) -> None:
    """Depth at most MAX_DEPTH and no lone surrogate in any string (they cannot be encoded)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _BadLine(f"nested deeper than {MAX_DEPTH} levels", "too_deep")
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _BadLine("text holds an unpaired surrogate (invalid Unicode)", "encoding")
        elif isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def decode_line(raw: bytes) -> Any:
    """One line's JSON within the limits; json.JSONDecodeError, UnicodeDecodeError or _BadLine."""
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_int=lambda t: int(_number(t)), parse_float=_float,
            parse_constant=_constant,
        )  # fmt: skip
    except RecursionError:
        raise _BadLine(f"nested deeper than {MAX_DEPTH} levels", "too_deep") from None
    _check_tree(value)
    return value


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


class _Statistics:
    """Token-free statistics over the valid examples, gathered one example at a time."""

    def __init__(self) -> None:
        self.n = self.characters = self.longest = 0
        self.chat = False
        self.messages = self.max_messages = self.weight_zero = 0
        self.roles: Counter[str] = Counter()

    def add(self, example: Example) -> None:
        """Count one valid example."""
        self.n += 1
        self.characters += example.n_chars
        self.longest = max(self.longest, example.n_chars)
        if example.format == "chat":
            self.chat = True
            self.messages += len(example.messages)
            self.max_messages = max(self.max_messages, len(example.messages))
            self.roles.update(m.role for m in example.messages)
            self.weight_zero += sum(1 for m in example.messages if not m.weight)

    def result(self) -> dict[str, Any]:
        """The statistics as the file row stores them."""
        stats: dict[str, Any] = {
            "characters": self.characters,
            "longest_example_chars": self.longest,
            "mean_example_chars": round(self.characters / self.n, 1) if self.n else 0.0,
        }
        if self.chat:
            stats["messages"] = self.messages
            stats["max_messages"] = self.max_messages
            stats["role_counts"] = {role: self.roles.get(role, 0) for role in ROLES}
            stats["weight_zero_messages"] = self.weight_zero
        return stats


def _decode(raw: bytes, line: int, report: ValidationReport) -> Any:
    """The line's JSON value, or None after adding the error to `report`."""
    if isinstance(raw, _LineTooLong):
        report.add_error(DatasetError(line, f"longer than {MAX_LINE_BYTES} bytes", "too_long"))
        return None
    try:
        return decode_line(raw)
    except UnicodeDecodeError as exc:
        report.add_error(DatasetError(line, f"not UTF-8 text: {exc.reason}", "encoding"))
    except json.JSONDecodeError as exc:
        report.add_error(DatasetError(line, f"invalid JSON: {exc.msg}", "invalid_json"))
    except _BadLine as exc:
        report.add_error(DatasetError(line, exc.message, exc.code))
    except ValueError as exc:  # int() past Python's digit limit
        report.add_error(DatasetError(line, f"invalid number: {str(exc)[:60]}", "number_too_large"))
    return None


def _scan(
    source: bytes | str | os.PathLike[str] | Iterable[bytes], *, keep: bool
) -> tuple[ValidationReport, list[Example]]:
    """Validate every line; return the report and (when `keep`) the valid examples."""
    report = ValidationReport()
    stats = _Statistics()
    examples: list[Example] = []
    blank_from, blanks = 0, 0
    first_line = 0
    line = 0
    for line, raw in enumerate(_lines(source), start=1):
        if line == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not isinstance(raw, _LineTooLong) and not raw.strip():
            blank_from, blanks = (blank_from or line), blanks + 1
            continue
        for n in range(blank_from, blank_from + blanks):
            report.add_error(DatasetError(n, "blank line", "blank_line"))
        blank_from, blanks = 0, 0
        obj = _decode(raw, line, report)
        if obj is None:
            continue
        example, errors = parse_example(obj, line)
        for error in errors:
            report.add_error(error)
        if example is None:
            continue
        if report.format is None:
            report.format, first_line = example.format, line
        elif example.format != report.format:
            msg = f"mixed formats: {example.format} here but {report.format} on line {first_line}"
            report.add_error(DatasetError(line, msg, "mixed_formats"))
            continue
        stats.add(example)
        if keep:
            examples.append(example)
    report.n_examples = stats.n
    if not stats.n and not report.n_errors:
        report.add_error(DatasetError(max(line, 1), "the file has no examples", "empty_file"))
    report.stats = stats.result()
    report.stats["lines"] = line
    return report, examples


def validate_jsonl(source: bytes | str | os.PathLike[str] | Iterable[bytes]) -> ValidationReport:
    """Validate a JSONL training file (bytes, a path, or byte chunks) and report every problem."""
    return _scan(source, keep=False)[0]


def read_examples(
    source: bytes | str | os.PathLike[str] | Iterable[bytes], *, name: str = "dataset"
) -> list[Example]:
    """Parse a training file into examples; raises DatasetValidationError listing its errors."""
    report, examples = _scan(source, keep=True)
    if not report.ok:
        raise DatasetValidationError(report, name)
    return examples


def examples_from_dicts(rows: Iterable[Any]) -> list[Example]:
    """Validate in-memory rows (decoded JSON objects) as one file would be."""
    data = b"\n".join(json.dumps(row).encode("utf-8") for row in rows)
    return read_examples(data, name="examples")
