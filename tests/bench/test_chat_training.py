"""bench/chat_training.py: percentiles, ratios, slowdown, the per-mode row and the flags."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bench import chat_training as ct


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1..4
    assert ct.percentile(values, 0) == 1.0
    assert ct.percentile(values, 100) == 4.0
    assert ct.percentile(values, 50) == pytest.approx(2.5)
    assert ct.percentile(values, 90) == pytest.approx(3.7)
    assert ct.percentile([7.0], 90) == 7.0


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        ct.percentile([], 50)


def test_latency_summary_takes_both_keys() -> None:
    samples = [{"latency_s": float(i), "ttft_s": i / 10} for i in range(1, 11)]
    summary = ct.latency_summary(samples)
    assert summary == {
        "latency_p50_s": 5.5, "latency_p90_s": 9.1, "ttft_p50_s": 0.55, "ttft_p90_s": 0.91,
    }  # fmt: skip


def test_ratio_and_slowdown() -> None:
    assert ct.ratio(3.0, 2.0) == 1.5
    assert ct.ratio(None, 2.0) is None
    assert ct.ratio(1.0, 0.0) is None
    assert ct.slowdown(2.0, 1.5) == 0.25
    assert ct.slowdown(2.0, 2.0) == 0.0
    assert ct.slowdown(None, 1.0) is None
    assert ct.slowdown(0.0, 1.0) is None


def test_steps_per_s_between_readings() -> None:
    assert ct.steps_per_s((10.0, 4), (30.0, 14)) == 0.5
    assert ct.steps_per_s((10.0, 4), (10.0, 9)) is None


def test_summarise_compares_training_with_idle() -> None:
    idle = [{"latency_s": 1.0, "ttft_s": 0.2}] * 3
    during = [{"latency_s": 1.5, "ttft_s": 0.5}] * 3
    row = ct.summarise("yield", idle, during, 0.8, 0.6)
    assert row["mode"] == "yield"
    assert row["latency_ratio_p50"] == 1.5
    assert row["ttft_ratio_p50"] == 2.5
    assert row["latency_ratio_p50"] <= ct.TARGET_RATIO
    assert row["training_slowdown"] == 0.25
    assert row["idle"]["latency_p90_s"] == 1.0


def test_modes_map_to_the_yield_setting() -> None:
    env = ct.service_env(ct.ROOT / "data", ct.MODES["free"])
    assert env["QUAFF_INFER_YIELD_TO_TRAINING"] == "false"
    assert ct.MODES["yield"] == "true"
    assert ct.parse_args(["--modes", "free"]).modes == "free"
    with pytest.raises(SystemExit):
        ct.parse_args(["--modes", "sometimes"])


def test_one_chat_times_the_first_content_and_counts_usage_tokens() -> None:
    def chunk(content: str | None, usage: int | None = None) -> SimpleNamespace:
        choices = (
            [] if content is None else [SimpleNamespace(delta=SimpleNamespace(content=content))]
        )
        tokens = None if usage is None else SimpleNamespace(completion_tokens=usage)
        return SimpleNamespace(choices=choices, usage=tokens)

    seen: dict[str, Any] = {}

    def create(**kwargs: Any) -> list[SimpleNamespace]:
        seen.update(kwargs)
        return [chunk(""), chunk("Hi"), chunk(" there"), chunk(None, usage=5)]

    sdk = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    sample = ct.one_chat(sdk, "tiny-llama", 8)  # type: ignore[arg-type]
    assert sample["tokens"] == 5
    assert 0 <= sample["ttft_s"] <= sample["latency_s"]
    assert seen["stream"] is True
    assert seen["temperature"] == 0
    assert seen["max_tokens"] == 8
    assert seen["stream_options"] == {"include_usage": True}
