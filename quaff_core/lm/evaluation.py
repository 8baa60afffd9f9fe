"""The one evaluation routine: token-weighted next-token loss and accuracy of a causal LM.

`batch_counts` is what the trainer's loss, its evaluation, `quaff eval`, the service and the
benchmarks all use: the chunked head + cross-entropy when the model exposes its decoder and
output head, else the model's full logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from quaff_core.lm.loss import IGNORE_INDEX, chunked_causal_lm_loss
from quaff_core.lm.tokenization import (
    PadCollator,
    TokenizedDataset,
    TrainOnInputs,
    tokenize_examples,
)
from quaff_core.options.spec import default


@dataclass(frozen=True)
class BatchCounts:
    """Mean CE over a batch's labelled tokens (float32 scalar, differentiable) and the counts."""

    loss: torch.Tensor
    n_correct: int
    n_tokens: int


@dataclass(frozen=True)
class EvalResult:
    """Mean next-token loss and accuracy over every labelled token of a dataset."""

    loss: float
    mean_token_accuracy: float
    n_examples: int
    n_tokens: int
    n_truncated: int


def _inner(model: nn.Module) -> nn.Module:
    """The model inside a data-parallel wrapper (DDP, DataParallel), else the model itself."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def causal_head(model: nn.Module) -> nn.Linear | None:
    """The output head of a (PEFT- or DDP-wrapped) causal LM, or None if it has no plain linear
    head (none, or logits soft-capped after it, as Gemma 2 does)."""
    inner = _inner(model)
    if getattr(getattr(inner, "config", None), "final_logit_softcapping", None):
        return None
    get_head = getattr(inner, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    return head if isinstance(head, nn.Linear) else None


def _full_logit_counts(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> BatchCounts:
    """Counts from the model's full logits [B, T, V]."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    labels = _align_labels(batch["labels"], logits.shape[1])
    shifted = logits[:, :-1].float()
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    n_tokens = int(keep.sum())
    loss_sum = nn.functional.cross_entropy(shifted[keep], target[keep], reduction="sum")
    correct = int((shifted[keep].argmax(dim=-1) == target[keep]).sum())
    return BatchCounts(loss_sum / max(n_tokens, 1), correct, n_tokens)


def _no_positions(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook of the head: feed it no positions, so the model's forward computes no
    logits (the chunked loss takes the head from the hidden states itself)."""
    return (args[0][..., :0, :], *args[1:])


def _align_labels(labels: torch.Tensor, length: int) -> torch.Tensor:
    """Labels left-padded with IGNORE_INDEX to `length`: prompt-tuning methods prepend virtual
    tokens to the sequence, which are never labelled."""
    extra = length - labels.shape[1]
    if extra <= 0:
        return labels
    pad = labels.new_full((labels.shape[0], extra), IGNORE_INDEX)
    return torch.cat([pad, labels], dim=1)


def batch_counts(
    model: nn.Module, batch: Mapping[str, torch.Tensor], *, chunked: bool = True
) -> BatchCounts:
    """Loss and argmax hits of one batch (input_ids, attention_mask, labels int64 [B, T]).

    The model runs through its own forward (so PEFT prompt methods add their virtual tokens and a
    DDP wrapper synchronises gradients); chunked, the forward computes no logits (its head sees
    no positions) and the loss comes from the final hidden states through the head, in chunks.
    """
    head = causal_head(model) if chunked else None
    if head is None:
        return _full_logit_counts(model, batch)
    with head.register_forward_pre_hook(_no_positions):
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            output_hidden_states=True,
            logits_to_keep=1,
        )
    hidden = out.hidden_states[-1]
    labels = _align_labels(batch["labels"], hidden.shape[1])
    loss, correct, total = chunked_causal_lm_loss(hidden, head, labels)
    return BatchCounts(loss, int(correct), int(total))


def evaluate_dataset(
    model: nn.Module,
    dataset: TokenizedDataset,
    *,
    pad_token_id: int,
    batch_size: int = 4,
    chunked: bool = True,
) -> EvalResult:
    """Loss and mean token accuracy of `model` on a tokenised dataset (no gradients)."""
    if not len(dataset):
        raise ValueError("the evaluation dataset has no example with a labelled token")
    collate = PadCollator(pad_token_id=pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                rows = _rows(dataset, range(start, min(start + batch_size, len(dataset))))
                batch = {k: v.to(device) for k, v in collate(rows).items()}
                counts = batch_counts(model, batch, chunked=chunked)
                loss_sum += float(counts.loss) * counts.n_tokens
                correct += counts.n_correct
                total += counts.n_tokens
    finally:
        model.train(was_training)
    return EvalResult(
        loss=loss_sum / total,
        mean_token_accuracy=correct / total,
        n_examples=len(dataset),
        n_tokens=total,
        n_truncated=dataset.n_truncated,
    )


def _rows(dataset: TokenizedDataset, indices: Sequence[int]) -> list[dict[str, Any]]:
    """The dataset rows at `indices`."""
    return [dataset[i] for i in indices]


def evaluate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Any],
    *,
    max_seq_length: int = default("max_seq_length"),
    train_on_inputs: TrainOnInputs = "auto",
    batch_size: int = 4,
) -> EvalResult:
    """Tokenise examples like training does and evaluate `model` on them."""
    dataset = tokenize_examples(
        examples, tokenizer, max_seq_length=max_seq_length, train_on_inputs=train_on_inputs
    )
    return evaluate_dataset(
        model, dataset, pad_token_id=int(tokenizer.pad_token_id), batch_size=batch_size
    )
