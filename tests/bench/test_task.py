"""The benchmark task generator: deterministic, disjoint splits, correct answers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from bench.task import ordinal, phrase, write_splits


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
