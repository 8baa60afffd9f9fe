"""A run's data: examples read once and tokenised once, shared by calibration and training."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from quaff_core.data.examples import chosen_view, prompt_view
from quaff_core.data.jsonl import Example, read_examples
from quaff_core.errors import NothingToTrainError, UnsupportedExamplesError
from quaff_core.lm.tokenization import TokenizedDataset, tokenize_examples
from quaff_core.options.train_config import TrainConfig
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import TrainCallbacks

DataSource = str | os.PathLike[str] | Sequence[Example]


@dataclass(frozen=True)
class TrainingData:
    """The training (and optional validation) examples and their tokenised sets."""

    train_examples: list[Example]
    train_set: TokenizedDataset
    valid_examples: list[Example] | None = None
    valid_set: TokenizedDataset | None = None


def read_data(data: DataSource, name: str) -> list[Example]:
    """Examples from a JSONL path or an in-memory list."""
    if isinstance(data, str | os.PathLike):
        return read_examples(data, name=f"{name} file {os.fspath(data)!r}")
    if not all(isinstance(e, Example) for e in data):
        raise TypeError(
            f"{name} data must be a JSONL path or a list of quaff_core.data.examples.Example"
        )
    return list(data)


def tokenize_for(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, config: TrainConfig, name: str
) -> TokenizedDataset:
    """Tokenise as training does (no events); NothingToTrainError for an empty result.

    A DPO dataset is tokenised as its preferred answers, a reinforcement one as its prompts
    (calibration, step counts).
    """
    if config.method == "dpo":
        other = [e.line for e in examples if e.format != "preference"]
        if other:
            raise UnsupportedExamplesError(
                other, "is not a preference pair, which method 'dpo' trains on", dataset=name
            )
        examples = [chosen_view(e) for e in examples]
    elif config.method == "reinforcement":
        other = [e.line for e in examples if e.format != "reinforcement"]
        if other:
            raise UnsupportedExamplesError(
                other, "is not a prompt, which method 'reinforcement' trains on", dataset=name
            )
        examples = [prompt_view(e) for e in examples]
    elif any(e.format == "reinforcement" for e in examples):
        lines = [e.line for e in examples if e.format == "reinforcement"]
        raise UnsupportedExamplesError(
            lines,
            "is a prompt without an answer: train prompts with method 'reinforcement'",
            dataset=name,
        )
    try:
        dataset = tokenize_examples(
            examples,
            tokenizer,
            max_seq_length=config.max_seq_length,
            train_on_inputs=config.train_on_inputs,
        )
    except UnsupportedExamplesError as exc:
        raise UnsupportedExamplesError(exc.lines, exc.reason, dataset=name) from None
    if not len(dataset):
        raise NothingToTrainError(name, config.max_seq_length)
    return dataset


def report_dataset(
    dataset: TokenizedDataset, n_examples: int, name: str, limit: int, callbacks: TrainCallbacks
) -> None:
    """Events for the examples a tokenised set truncated or dropped."""
    if dataset.n_truncated:
        callbacks.on_event(
            TrainEvent(
                EventKind.EXAMPLES_TRUNCATED,
                f"{dataset.n_truncated} of {n_examples} {name} examples truncated to "
                f"{limit} tokens",
                {
                    "dataset": name,
                    "count": dataset.n_truncated,
                    "reason": "longer_than_max_seq_length",
                    "max_seq_length": limit,
                },
            )
        )
    if dataset.n_dropped:
        callbacks.on_event(
            TrainEvent(
                EventKind.EXAMPLES_DROPPED,
                f"{dataset.n_dropped} of {n_examples} {name} examples dropped: no trainable "
                f"token within max_seq_length={limit}",
                {
                    "dataset": name,
                    "count": dataset.n_dropped,
                    "reason": "no_trainable_token",
                    "max_seq_length": limit,
                },
                level="warn",
            )
        )


def tokenize_dataset(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    *,
    name: str,
    callbacks: TrainCallbacks,
) -> TokenizedDataset:
    """Tokenise as training does and report truncated and dropped examples."""
    dataset = tokenize_for(examples, tokenizer, config, name)
    report_dataset(dataset, len(examples), name, config.max_seq_length, callbacks)
    return dataset


def tokenize_data(
    train_data: DataSource,
    validation_data: DataSource | None,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
) -> TrainingData:
    """Read and tokenise a run's training and validation data (no events: see `report_data`)."""
    train_examples = read_data(train_data, "training")
    valid_examples = (
        read_data(validation_data, "validation") if validation_data is not None else None
    )
    return TrainingData(
        train_examples=train_examples,
        train_set=tokenize_for(train_examples, tokenizer, config, "training"),
        valid_examples=valid_examples,
        valid_set=(
            tokenize_for(valid_examples, tokenizer, config, "validation")
            if valid_examples is not None
            else None
        ),
    )


def report_data(data: TrainingData, config: TrainConfig, callbacks: TrainCallbacks) -> None:
    """The truncation and drop events of both sets of a run."""
    limit = config.max_seq_length
    report_dataset(data.train_set, len(data.train_examples), "training", limit, callbacks)
    if data.valid_set is not None and data.valid_examples is not None:
        report_dataset(data.valid_set, len(data.valid_examples), "validation", limit, callbacks)
