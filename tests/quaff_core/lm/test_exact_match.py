"""Exact-match scoring and greedy decoding of chat prompts."""

from __future__ import annotations

import pytest

from quaff_core.data.jsonl import Example, Message
from quaff_core.lm.exact_match import exact_match, normalise, prompt_and_answer, score
from quaff_core.models.loading import load_tiny_llama


def chat(user: str, answer: str) -> Example:
    return Example(
        format="chat",
        line=1,
        messages=(
            Message("system", "Convert."),
            Message("user", user),
            Message("assistant", answer),
        ),
    )


def test_normalise_keeps_the_first_non_empty_line_stripped() -> None:
    assert normalise("  2023-07-14 \n more") == "2023-07-14"
    assert normalise("\n\n 1999-01-02") == "1999-01-02"
    assert normalise("   ") == ""


def test_exact_match_counts_normalised_equal_answers() -> None:
    assert exact_match(["2023-07-14\n", " 2023-07-15", "x"], ["2023-07-14"] * 3) == 1 / 3
    assert exact_match([], []) == 0.0


def test_exact_match_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 answers"):
        exact_match(["a", "b"], ["a"])


def test_prompt_and_answer_splits_off_the_assistant_turn() -> None:
    prompt, answer = prompt_and_answer(chat("July 14th, 2023", "2023-07-14"))
    assert answer == "2023-07-14"
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[1]["content"] == "July 14th, 2023"


def test_prompt_and_answer_needs_an_assistant_answer_last() -> None:
    bad = Example(format="chat", line=3, messages=(Message("user", "hi"),))
    with pytest.raises(ValueError, match="assistant"):
        prompt_and_answer(bad)
    with pytest.raises(ValueError, match="chat examples"):
        prompt_and_answer(Example(format="text", line=1, text="x"))


def test_score_decodes_every_prompt_greedily_and_deterministically() -> None:
    model, tokenizer = load_tiny_llama()
    examples = [chat(f"day {i}", "2023-07-14") for i in range(3)]
    first = score(model, tokenizer, examples, batch_size=2, max_new_tokens=3)
    second = score(model, tokenizer, examples, batch_size=3, max_new_tokens=3)
    assert len(first.predictions) == 3
    assert first.answers == ["2023-07-14"] * 3
    assert first.predictions == second.predictions  # greedy, padding-side independent
    assert first.exact_match == exact_match(first.predictions, first.answers)
    assert tokenizer.padding_side == "right"  # restored
