"""Training files: scan and validate JSONL datasets in pure Python (no torch import).

Four formats, one per file (see docs/api.md): OpenAI's chat format (with tools and tool calls),
`{"prompt", "completion"}`, `{"text"}`, and OpenAI's preference pairs (for DPO); each line is
parsed by `quaff_core.formats`. The API validates uploads with `validate_jsonl`; the trainer
reads examples with `read_examples`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quaff_core.chat_format import ROLES
from quaff_core.examples import DatasetError, Example, Format, Message, ToolCall
from quaff_core.formats import FORMAT_KEYS, parse_example

__all__ = [
    "FORMAT_KEYS",
    "ROLES",
    "DatasetError",
    "DatasetValidationError",
    "Example",
    "Format",
    "Message",
    "ToolCall",
    "ValidationReport",
    "examples_from_dicts",
    "parse_example",
    "read_examples",
    "validate_jsonl",
]

SUMMARY_ERRORS = 5
_BOM = b"\xef\xbb\xbf"


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


def _statistics(examples: list[Example]) -> dict[str, Any]:
    """Token-free statistics over the valid examples."""
    chars = [e.n_chars for e in examples]
    roles: Counter[str] = Counter(m.role for e in examples for m in e.turns)
    stats: dict[str, Any] = {
        "characters": sum(chars),
        "longest_example_chars": max(chars, default=0),
        "mean_example_chars": round(sum(chars) / len(chars), 1) if chars else 0.0,
    }
    if any(e.format in ("chat", "preference") for e in examples):
        counts = [len(e.turns) for e in examples]
        stats["messages"] = sum(counts)
        stats["max_messages"] = max(counts, default=0)
        stats["role_counts"] = {role: roles.get(role, 0) for role in ROLES if role != "function"}
        stats["weight_zero_messages"] = sum(1 for e in examples for m in e.turns if not m.weight)
        stats["tool_calls"] = sum(len(m.tool_calls) for e in examples for m in e.turns)
        stats["examples_with_tools"] = sum(1 for e in examples if e.tools)
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
