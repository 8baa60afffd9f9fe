"""The benchmark task generator: deterministic, disjoint splits, correct answers."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from bench.task import ordinal, phrase, question, write_splits


def read(path: Path) -> list[dict[str, list[dict[str, str]]]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_files(tmp_path: Path) -> None:
    sizes = {"train": 50, "validation": 10, "test": 10}
    first = write_splits(tmp_path / "a", sizes, seed=3)
    second = write_splits(tmp_path / "b", sizes, seed=3)
    for split in sizes:
        assert first[split].read_bytes() == second[split].read_bytes()
    other = write_splits(tmp_path / "c", sizes, seed=4)
    assert other["train"].read_bytes() != first["train"].read_bytes()


def test_splits_are_disjoint_and_answers_match(tmp_path: Path) -> None:
    paths = write_splits(tmp_path, {"train": 300, "validation": 50, "test": 50}, seed=0)
    answers: dict[str, set[str]] = {}
    for split, path in paths.items():
        rows = read(path)
        assert len(rows) == {"train": 300, "validation": 50, "test": 50}[split]
        answers[split] = {row["messages"][-1]["content"] for row in rows}
        assert len(answers[split]) == len(rows)
        for row in rows:
            roles = [m["role"] for m in row["messages"]]
            assert roles == ["system", "user", "assistant"]
            date = dt.date.fromisoformat(row["messages"][2]["content"])
            assert str(date.year) in row["messages"][1]["content"]
    assert not answers["train"] & answers["test"]
    assert not answers["train"] & answers["validation"]
    assert not answers["validation"] & answers["test"]


def test_surface_forms() -> None:
    date = dt.date(2023, 7, 14)
    assert phrase(date, 0) == "Friday, the 14th of July 2023"
    assert phrase(date, 1) == "July 14th, 2023"
    assert [ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "23rd",
        "31st",
    ]


def test_shifted_questions_answer_the_later_date(tmp_path: Path) -> None:
    paths = write_splits(tmp_path, {"train": 300, "test": 60}, seed=1, shift_max=9)
    rows = read(paths["train"]) + read(paths["test"])
    shifted = 0
    for row in rows:
        user, answer = row["messages"][1]["content"], row["messages"][2]["content"]
        match = re.match(r"(\d) days? after (.*)$", user)
        if match is None:
            continue
        shifted += 1
        n, words = int(match.group(1)), match.group(2)
        assert 1 <= n <= 9
        start = dt.date.fromisoformat(answer) - dt.timedelta(days=n)
        assert words in {phrase(start, style) for style in range(5)}
    assert 0.3 < shifted / len(rows) < 0.7
    answers = {split: {r["messages"][2]["content"] for r in read(p)} for split, p in paths.items()}
    assert not answers["train"] & answers["test"]


def test_question_forms() -> None:
    date = dt.date(2023, 7, 14)
    assert question(date, 1, 0) == "July 14th, 2023"
    assert question(date, 1, 1) == "1 day after July 14th, 2023"
    assert question(date, 2, 5) == "5 days after the 14th of July, 2023"
    with pytest.raises(ValueError, match="shift_max must be >= 0"):
        write_splits(Path("unused"), {"train": 1}, shift_max=-1)
