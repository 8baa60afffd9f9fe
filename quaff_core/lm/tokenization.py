"""Tokenise examples with the model's chat template and mask labels to the trained tokens."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jinja2.exceptions import TemplateError
from transformers import PreTrainedTokenizerBase

from quaff_core.data.chat_templates import renders_tools
from quaff_core.data.jsonl import Example
from quaff_core.errors import UnsupportedExamplesError
from quaff_core.lm.loss import IGNORE_INDEX

logger = logging.getLogger(__name__)

__all__ = ["IGNORE_INDEX", "PadCollator", "TokenizedDataset", "TokenizedExample"]
TrainOnInputs = bool | Literal["auto"]


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and labels (IGNORE_INDEX where no loss is taken), after truncation."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        """Tokens that carry a loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class TokenizedDataset(torch.utils.data.Dataset[dict[str, list[int]]]):
    """Tokenised examples plus the counts the trainer reports (truncated, dropped, tokens)."""

    examples: list[TokenizedExample] = field(default_factory=list)
    n_truncated: int = 0
    n_dropped: int = 0

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}

    @property
    def n_tokens(self) -> int:
        """All tokens in the dataset (one epoch)."""
        return sum(len(e.input_ids) for e in self.examples)


def _render(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    gen: bool,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """The chat template applied to `messages` (and the example's `tools`) as text."""
    if not messages:
        return ""
    text = tokenizer.apply_chat_template(
        messages, tools=list(tools or ()) or None, tokenize=False, add_generation_prompt=gen
    )
    if not isinstance(text, str):
        raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    return text


def template_renders_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's chat template shows tools, tool calls and tool results."""
    return renders_tools(lambda messages, tools: _render(tokenizer, messages, False, tools))


def uses_tools(example: Example) -> bool:
    """Whether an example has tools, tool calls or tool results to render."""
    return bool(example.tools) or any(m.tool_calls or m.role == "tool" for m in example.turns)


def _turn_end(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    upto: str,
    tools: list[dict[str, Any]] | None,
) -> int:
    """End of the last turn in `upto`: where it stops agreeing with a render that continues."""
    probe = [*messages, {"role": "user", "content": "\x00"}]
    try:
        longer = _render(tokenizer, probe, False, tools)
    except TemplateError:
        return len(upto.rstrip())
    same = next(
        (j for j, (a, b) in enumerate(zip(upto, longer, strict=False)) if a != b), len(upto)
    )
    return len(upto[:same].rstrip())


def chat_spans(
    tokenizer: PreTrainedTokenizerBase, example: Example, *, all_assistant: bool = False
) -> tuple[str, list[tuple[int, int]]]:
    """Render a chat example; return its text and the character spans of trained assistant turns."""
    # A span runs from the end of the generation prompt to the end of the turn (end-of-turn token
    # included, trailing whitespace not), found by rendering prefixes of the conversation; when a
    # template's prefixes are not stable, the content is located in the full text instead.
    messages = [m.to_template() for m in example.messages]
    tools = example.template_tools()
    text = _render(tokenizer, messages, False, tools)
    spans: list[tuple[int, int]] = []
    cursor = 0
    eos = tokenizer.eos_token if isinstance(tokenizer.eos_token, str) else None
    for i, message in enumerate(example.messages):
        if message.role != "assistant" or not (message.weight or all_assistant):
            continue
        prefix = _render(tokenizer, messages[:i], True, tools)
        upto = _render(tokenizer, messages[: i + 1], False, tools)
        stable = i > 0 and upto.startswith(prefix) and text.startswith(upto)
        if stable and len(prefix) >= cursor:
            start, end = len(prefix), _turn_end(tokenizer, messages[: i + 1], upto, tools)
        else:
            needle = message.content or (message.tool_calls[0].name if message.tool_calls else "")
            start = text.find(needle, cursor) if needle else -1
            if start < 0:
                raise ValueError(
                    f"line {example.line}: the chat template dropped assistant message {i}; "
                    "use a template that renders every assistant turn"
                )
            end = start + len(needle)
            if eos and text.startswith(eos, end):
                end += len(eos)
        spans.append((start, end))
        cursor = end
    return text, spans


def _chat_ids(
    tokenizer: PreTrainedTokenizerBase, example: Example, train_all: bool
) -> tuple[list[int], list[int]]:
    """Token ids and labels of a chat example."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("chat tokenisation needs a fast (tokenizers-backed) tokenizer")
    text, spans = chat_spans(tokenizer, example)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    if train_all:
        return ids, list(ids)
    labels = [IGNORE_INDEX] * len(ids)
    for j, (start, _end) in enumerate(enc["offset_mapping"]):
        if any(s <= start < e for s, e in spans):
            labels[j] = ids[j]
    return ids, labels


def tokenize_example(
    example: Example,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    train_on_inputs: TrainOnInputs = "auto",
) -> TokenizedExample:
    """Tokenise one example and mask its labels; truncate to `max_seq_length` tokens."""
    if max_seq_length < 2:
        raise ValueError(f"max_seq_length must be >= 2, got {max_seq_length}")
    train_all = train_on_inputs is True
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if example.format == "chat":
        ids, labels = _chat_ids(tokenizer, example, train_all)
    elif example.format == "prompt_completion":
        prompt = list(tokenizer(example.prompt, add_special_tokens=True)["input_ids"])
        completion = list(tokenizer(example.completion, add_special_tokens=False)["input_ids"])
        ids = prompt + completion + eos
        masked = list(prompt) if train_all else [IGNORE_INDEX] * len(prompt)
        labels = masked + completion + eos
    else:
        ids = list(tokenizer(example.text, add_special_tokens=True)["input_ids"]) + eos
        labels = list(ids)
    truncated = len(ids) > max_seq_length
    return TokenizedExample(ids[:max_seq_length], labels[:max_seq_length], truncated)


def check_renderable(examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase) -> None:
    """UnsupportedExamplesError naming the lines this model's tokenizer cannot train on."""
    pairs = [e.line for e in examples if e.format == "preference"]
    if pairs:
        raise UnsupportedExamplesError(
            pairs, "is a preference pair: train preference files with method 'dpo'"
        )
    tooled = [e.line for e in examples if uses_tools(e)]
    if tooled and not template_renders_tools(tokenizer):
        raise UnsupportedExamplesError(
            tooled,
            "uses tools or tool calls, which this model's chat template cannot render; use a "
            "model whose template supports tools",
        )


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    train_on_inputs: TrainOnInputs = "auto",
) -> TokenizedDataset:
    """Tokenise a dataset; counts truncated examples and drops those left with nothing to train."""
    if train_on_inputs not in (True, False, "auto"):
        raise ValueError(f"train_on_inputs must be true, false or 'auto', got {train_on_inputs!r}")
    check_renderable(examples, tokenizer)
    dataset = TokenizedDataset()
    for example in examples:
        tok = tokenize_example(
            example, tokenizer, max_seq_length=max_seq_length, train_on_inputs=train_on_inputs
        )
        dataset.n_truncated += tok.truncated
        if tok.n_trained == 0:
            dataset.n_dropped += 1
            continue
        dataset.examples.append(tok)
    if dataset.n_truncated:
        logger.info(
            "%d of %d examples truncated to %d tokens",
            dataset.n_truncated,
            len(examples),
            max_seq_length,
        )
    return dataset


@dataclass(frozen=True)
class PadCollator:
    """Right-pad a batch: input_ids with `pad_token_id`, labels with IGNORE_INDEX, plus a mask."""

    pad_token_id: int

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack rows into (batch, longest) int64 tensors."""
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.tensor(row["labels"], dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
