"""Greedy decoding of test prompts and exact-match scoring of the answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from quaff_core.data.jsonl import Example


def normalise(text: str) -> str:
    """The answer as compared: first non-empty line, surrounding whitespace stripped."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def exact_match(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Fraction of predictions equal to their answer after `normalise` (0.0 for none)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        return 0.0
    hits = sum(normalise(p) == normalise(a) for p, a in zip(predictions, answers, strict=True))
    return hits / len(answers)


def prompt_and_answer(example: Example) -> tuple[list[dict[str, str]], str]:
    """A chat example split into the prompt turns and the final assistant answer."""
    if example.format != "chat" or not example.messages:
        raise ValueError("exact-match examples must be chat examples")
    *prompt, last = example.messages
    if last.role != "assistant":
        raise ValueError(f"the last turn must be the assistant's answer, got {last.role!r}")
    return [{"role": m.role, "content": m.content} for m in prompt], last.content


@dataclass(frozen=True)
class Scored:
    """Exact match of greedy answers on a test set, with every prediction."""

    exact_match: float
    predictions: list[str]
    answers: list[str]


@torch.no_grad()
def greedy_answers(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict[str, str]]],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 12,
) -> list[str]:
    """Greedy completions (decoded, special tokens dropped) of chat prompts, left-padded batches."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(  # type: ignore[operator]
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outputs


def score(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 12,
) -> Scored:
    """Greedy-decode every example's prompt and score exact match against its answer."""
    pairs = [prompt_and_answer(e) for e in examples]
    predictions = greedy_answers(
        model,
        tokenizer,
        [p for p, _ in pairs],
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    answers = [a for _, a in pairs]
    return Scored(exact_match(predictions, answers), predictions, answers)
