"""Tests of the training-file rules (quaff_core.data.jsonl)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import quaff_core.data.jsonl as data
from quaff_core.data.jsonl import (
    MAX_KEPT_ERRORS,
    DatasetValidationError,
    Message,
    examples_from_dicts,
    read_examples,
    validate_jsonl,
)

CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "weight": 0},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
}


def jsonl(*rows: Any) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def errors_of(data: bytes) -> list[tuple[int, str]]:
    return [(e.line, e.code) for e in validate_jsonl(data).errors]


def test_chat_file_is_valid_with_statistics() -> None:
    report = validate_jsonl(jsonl(CHAT, CHAT))
    assert report.ok
    assert report.format == "chat"
    assert report.n_examples == 2
    assert report.stats["messages"] == 10
    assert report.stats["role_counts"] == {"system": 2, "user": 4, "assistant": 4, "tool": 0}
    assert report.stats["weight_zero_messages"] == 2
    assert report.stats["longest_example_chars"] == len("Be brief.HiHello!ByeGoodbye.")
    assert report.summary() == "2 chat examples"


def test_prompt_completion_and_text_formats() -> None:
    pc = validate_jsonl(jsonl({"prompt": "2+2=", "completion": "4"}))
    assert (pc.ok, pc.format, pc.stats["characters"]) == (True, "prompt_completion", 5)
    text = validate_jsonl(jsonl({"text": "hello"}, {"text": "world"}))
    assert (text.ok, text.format, text.n_examples) == (True, "text", 2)


def test_bom_and_trailing_blank_lines_are_tolerated() -> None:
    data = b"\xef\xbb\xbf" + jsonl({"text": "a"}, {"text": "b"}) + b"\n\n  \n"
    report = validate_jsonl(data)
    assert report.ok, report.summary()
    assert report.n_examples == 2


def test_blank_line_in_the_middle_is_an_error() -> None:
    assert errors_of(jsonl({"text": "a"}) + b"\n" + jsonl({"text": "b"})) == [(2, "blank_line")]


def test_each_problem_is_reported_with_its_line() -> None:
    data = jsonl(
        {"text": "ok"},
        b"{not json",
        {"text": "x", "extra": 1},
        {"text": 3},
        {"text": "  "},
        {"prompt": "p", "completion": "c"},
        [1, 2],
        {"foo": "bar"},
        {"text": "x", "prompt": "y"},
    )
    assert errors_of(data) == [
        (2, "invalid_json"),
        (3, "unknown_key"),
        (4, "wrong_type"),
        (5, "empty_content"),
        (6, "mixed_formats"),
        (7, "wrong_type"),
        (8, "unknown_format"),
        (9, "mixed_formats"),
    ]
    report = validate_jsonl(data)
    assert not report.ok
    assert report.n_examples == 1
    assert report.summary().startswith("line 2: invalid JSON: ")
    assert report.summary().endswith("; and 3 more errors")


def test_chat_message_rules() -> None:
    def chat(*messages: Any) -> bytes:
        return jsonl({"messages": list(messages)})

    user = {"role": "user", "content": "q"}
    assert errors_of(chat(user)) == []  # a prompt without its answer: the reinforcement format
    assert validate_jsonl(chat(user)).format == "reinforcement"
    assert errors_of(chat(user, {"role": "assistant", "content": "a", "weight": 0})) == [
        (1, "no_assistant")
    ]
    assert errors_of(chat({"role": "robot", "content": "x"})) == [(1, "role")]
    assert errors_of(chat(user, {"role": "assistant", "content": ""})) == [(1, "empty_content")]
    assert errors_of(chat(user, {"role": "assistant", "content": None})) == [(1, "wrong_type")]
    assert errors_of(chat(user, {"role": "assistant", "content": "a", "weight": 2})) == [
        (1, "weight")
    ]
    assert errors_of(chat({**user, "weight": 1}, {"role": "assistant", "content": "a"})) == [
        (1, "weight")
    ]
    assert errors_of(chat(user, {"role": "assistant", "content": "a", "mood": "x"})) == [
        (1, "unknown_key")
    ]
    assert errors_of(jsonl({"messages": []})) == [(1, "wrong_type")]


def test_invalid_utf8_and_empty_file() -> None:
    assert errors_of(b'{"text": "\xff"}\n') == [(1, "encoding")]
    assert errors_of(b"") == [(1, "empty_file")]
    assert not validate_jsonl(b"\n\n").ok


def test_sources_path_and_chunks_agree(tmp_path: Path) -> None:
    data = jsonl(CHAT, CHAT, CHAT)
    path = tmp_path / "train.jsonl"
    path.write_bytes(data)
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    reports = [validate_jsonl(path), validate_jsonl(str(path)), validate_jsonl(iter(chunks))]
    assert [(r.ok, r.n_examples, r.stats) for r in reports] == [(True, 3, reports[0].stats)] * 3


def test_missing_file_and_bad_source_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        validate_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(TypeError, match="must be bytes"):
        validate_jsonl(42)  # type: ignore[arg-type]


def test_read_examples_parses_or_raises() -> None:
    examples = read_examples(jsonl(CHAT))
    assert examples[0].messages[2] == Message("assistant", "Hello!", 0)
    assert examples[0].line == 1
    with pytest.raises(DatasetValidationError, match="line 1: invalid JSON") as exc:
        read_examples(b"{\n")
    assert exc.value.report.errors[0].line == 1
    rows = examples_from_dicts([{"prompt": "a", "completion": "b"}])
    assert (rows[0].prompt, rows[0].completion) == ("a", "b")


def test_importing_data_and_catalog_leaves_torch_out() -> None:
    code = (
        "import sys, quaff_core, quaff_core.data.jsonl, quaff_core.options.base_models;"
        'quaff_core.validate_jsonl(b\'{"text": "x"}\'); quaff_core.list_base_models();'
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_hostile_lines_are_errors_not_crashes() -> None:
    good = jsonl({"text": "fine"}).rstrip()
    lines = [
        b"[" * 100_000,
        b'{"text": ' + b"1" * 5000 + b"}",
        b'{"text": 1e999}',
        b'{"text": "\\ud800 lone"}',
        b'{"text": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}",
        b'{"text": NaN}',
    ]
    report = validate_jsonl(b"\n".join([good, *lines]) + b"\n")
    assert [(e.line, e.code) for e in report.errors] == [
        (2, "too_deep"),
        (3, "number_too_large"),
        (4, "number_too_large"),
        (5, "encoding"),
        (6, "too_deep"),
        (7, "invalid_json"),
    ]
    assert not report.ok


def test_a_paired_surrogate_escape_is_fine() -> None:
    report = validate_jsonl(b'{"text": "smile \\ud83d\\ude00"}\n')
    assert report.ok, report.summary()


def test_errors_are_counted_but_only_the_first_ones_kept() -> None:
    report = validate_jsonl(b"{bad\n" * (MAX_KEPT_ERRORS * 3))
    assert report.n_errors == MAX_KEPT_ERRORS * 3
    assert len(report.errors) == MAX_KEPT_ERRORS
    assert report.summary().endswith(f"; and {MAX_KEPT_ERRORS * 3 - 5} more errors")


def test_an_overlong_line_is_skipped_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "MAX_LINE_BYTES", 64)
    path = tmp_path / "long.jsonl"
    path.write_bytes(jsonl({"text": "x" * 500}, {"text": "ok"}))
    raw = path.read_bytes()
    chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    for source in (path, raw, iter(chunks)):
        report = validate_jsonl(source)
        assert [(e.line, e.code) for e in report.errors] == [(1, "too_long")]
        assert report.n_examples == 1
