"""Training files: scan and validate JSONL datasets in pure Python (no torch import).

Four formats, one per file (see docs/engine.md): OpenAI's chat format (with tools and tool calls),
`{"prompt", "completion"}`, `{"text"}`, and OpenAI's preference pairs (for DPO); each line is
parsed by `quaff_core.data.formats`. The API validates uploads with `validate_jsonl`; the trainer
reads examples with `read_examples`. Validation runs in bounded memory: lines are read one at a
time and bounded in length, each line's JSON in nesting depth and number size, and only the first
`MAX_KEPT_ERRORS` errors are kept (with a count of all of them); examples are kept only when
`read_examples` asks for them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quaff_core.data.bounded_json import JsonLimitError, loads_bounded
from quaff_core.data.chat_format import ROLES
from quaff_core.data.examples import DatasetError, Example, Format, Message, ToolCall
from quaff_core.data.formats import FORMAT_KEYS, parse_example

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
    "decode_line",
    "examples_from_dicts",
    "parse_example",
    "read_examples",
    "validate_jsonl",
]

SUMMARY_ERRORS = 5
MAX_KEPT_ERRORS = 100
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
_BOM = b"\xef\xbb\xbf"


class _LineTooLong(bytes):
    """Stands for a line longer than MAX_LINE_BYTES (its bytes were skipped, not kept)."""


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


def decode_line(raw: bytes) -> Any:
    """One line's JSON within the limits; UnicodeDecodeError, json.JSONDecodeError or
    JsonLimitError otherwise."""
    return loads_bounded(
        raw.decode("utf-8"), max_depth=MAX_DEPTH, max_number_chars=MAX_NUMBER_CHARS
    )


class _Statistics:
    """Token-free statistics over the valid examples, gathered one example at a time."""

    def __init__(self) -> None:
        self.n = self.characters = self.longest = 0
        self.chat = False
        self.messages = self.max_messages = self.weight_zero = 0
        self.tool_calls = self.with_tools = 0
        self.roles: Counter[str] = Counter()

    def add(self, example: Example) -> None:
        """Count one valid example."""
        self.n += 1
        self.characters += example.n_chars
        self.longest = max(self.longest, example.n_chars)
        if example.format in ("chat", "preference", "reinforcement"):
            turns = example.turns
            self.chat = True
            self.messages += len(turns)
            self.max_messages = max(self.max_messages, len(turns))
            self.roles.update(m.role for m in turns)
            self.weight_zero += sum(1 for m in turns if not m.weight)
            self.tool_calls += sum(len(m.tool_calls) for m in turns)
            self.with_tools += bool(example.tools)

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
            stats["role_counts"] = {r: self.roles.get(r, 0) for r in ROLES if r != "function"}
            stats["weight_zero_messages"] = self.weight_zero
            stats["tool_calls"] = self.tool_calls
            stats["examples_with_tools"] = self.with_tools
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
    except JsonLimitError as exc:
        report.add_error(DatasetError(line, exc.message, exc.code))
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
