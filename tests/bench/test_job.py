"""bench.job: the whole-job comparison, run for real on tiny-llama (both sides, short data)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from bench.job import main, make_data, parse_args, phases, summarise
from bench.task import worked_answer


def test_the_long_variant_has_step_by_step_answers_ending_in_the_date(tmp_path: Path) -> None:
    short = make_data(tmp_path, "short", 5, seed=1)
    long = make_data(tmp_path, "long", 5, seed=1)
    for s_line, l_line in zip(
        short.read_text().splitlines(), long.read_text().splitlines(), strict=True
    ):
        s_answer = json.loads(s_line)["messages"][-1]["content"]
        l_answer = json.loads(l_line)["messages"][-1]["content"]
        assert l_answer.endswith(s_answer)
        assert len(l_answer.split()) > 60


def test_worked_answer_names_the_shift_only_when_there_is_one() -> None:
    plain = worked_answer(dt.date(2023, 7, 14), 0, dt.date(2023, 7, 14))
    shifted = worked_answer(dt.date(2023, 7, 30), 3, dt.date(2023, 8, 2))
    assert "later" not in plain
    assert plain.endswith("2023-07-14")
    assert "3 days later" in shifted
    assert shifted.endswith("2023-08-02")


def test_summarise_gives_tokens_per_second_and_speed_up_over_hf() -> None:
    runs = {"quaff-cold-cache": {"wall_s": 50.0}, "hf": {"wall_s": 100.0}}
    rows = summarise("short", 1000, runs)["runs"]
    assert rows["hf"]["speedup_vs_hf"] == 1.0
    assert rows["quaff-cold-cache"] == {"wall_s": 50.0, "tokens_per_s": 20.0, "speedup_vs_hf": 2.0}


def test_phases_split_a_run_by_its_output_lines() -> None:
    lines = [
        (0.5, "Loading base model tiny-llama"),
        (2.0, "Calibrating outlier channels on 64 examples"),
        (9.0, "Quantized 14 linear layers to int8 (3 outlier channels kept in full precision)"),
        (15.0, "Compiled the quantize passes in 5.5 s (kept out of the ETA)"),
        (17.0, "Step 1/2: training loss=2.0"),
        (19.0, "Step 2/2: training loss=1.9"),
    ]
    assert phases(lines, 2, end=21.5) == {
        "startup_s": 2.0,
        "calibration_s": 7.0,
        "warmup_s": 5.5,
        "training_s": 10.0,
        "finish_s": 2.5,
    }
    assert phases(lines[:1], 2, end=3.0)["calibration_s"] is None


def test_unknown_variant_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--variants", "short,huge"])


@pytest.mark.slow
def test_both_jobs_run_and_are_timed_on_tiny_llama(tmp_path: Path) -> None:
    out = tmp_path / "job.json"
    argv = ["--model", "tiny-llama", "--variants", "short", "--steps", "2", "--batch-size", "2"]
    results = main([*argv, "--json", str(out)])
    (short,) = results
    assert set(short["runs"]) == {"quaff-cold-cache", "hf", "quaff-warm-cache"}
    assert short["tokens"] > 0
    for run in short["runs"].values():
        assert run["steps"] == 2
        assert run["wall_s"] > 0
        assert run["tokens_per_s"] > 0
    assert short["runs"]["hf"]["tokens"] == short["tokens"]
    cold = short["runs"]["quaff-cold-cache"]
    assert cold["calibration_s"] is not None
    assert cold["training_s"] is not None
    assert json.loads(out.read_text())["results"] == results
