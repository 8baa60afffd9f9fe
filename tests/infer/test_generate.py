"""Batched generation with per-row limits: equal to `generate` row by row, stops, logprobs."""

from __future__ import annotations

from typing import Any

import pytest

from infer.generate import Row, Sampling, TokenEvent, generate_rows
from quaff_core.models.loading import load_base_model


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    model, tokenizer = load_base_model("tiny-llama")
    return model.eval(), tokenizer


def _rows(
    tokenizer: Any, prompts: list[str], limits: list[int], stop: tuple[str, ...] = ()
) -> tuple[list[Row], list[list[TokenEvent]]]:
    events: list[list[TokenEvent]] = [[] for _ in prompts]
    rows = [
        Row(list(tokenizer(p, add_special_tokens=False)["input_ids"]), n, events[i].append, stop)
        for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    ]
    return rows, events


def test_a_left_padded_batch_equals_generate_row_by_row(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    prompts = ["hello there", "what is 2 plus 2? and more words"]
    rows, events = _rows(tokenizer, prompts, [12, 7])
    generate_rows(model, tokenizer, rows, Sampling(temperature=0.0))
    for prompt, limit, got in zip(prompts, [12, 7], events, strict=True):
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=limit, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        assert [e.token_id for e in got] == out[0, ids["input_ids"].shape[1] :].tolist()
        assert got[-1].finish_reason == "length"
        assert sum(e.finish_reason is not None for e in got) == 1


def test_a_stop_string_ends_the_row_and_is_not_returned(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    rows, events = _rows(tokenizer, ["hello there"], [20])
    generate_rows(model, tokenizer, rows, Sampling(temperature=0.0))
    text = "".join(e.text for e in events[0])
    stop = text[3:5]
    rows, events = _rows(tokenizer, ["hello there"], [20], (stop,))
    generate_rows(model, tokenizer, rows, Sampling(temperature=0.0))
    assert "".join(e.text for e in events[0]) == text[: text.find(stop)]
    assert events[0][-1].finish_reason == "stop"


def test_logprobs_are_the_raw_distribution_with_top_alternatives(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    rows, events = _rows(tokenizer, ["hello"], [3])
    generate_rows(model, tokenizer, rows, Sampling(temperature=0.0, logprobs=True, top_logprobs=2))
    for event in events[0]:
        assert event.logprob is not None
        assert len(event.top) == 2
        assert event.top[0] == (event.token_id, pytest.approx(event.logprob))


def test_the_same_seed_samples_the_same_tokens(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    runs = []
    for _ in range(2):
        rows, events = _rows(tokenizer, ["hello"], [6])
        generate_rows(model, tokenizer, rows, Sampling(temperature=1.0, top_p=0.9, seed=5))
        runs.append([e.token_id for e in events[0]])
    assert runs[0] == runs[1]
