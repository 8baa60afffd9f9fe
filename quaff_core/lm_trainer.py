"""`CausalLMTrainer`: HF `Trainer` with a memory-saving chunked loss and mean token accuracy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from quaff_core.tokenize import IGNORE_INDEX

logger = logging.getLogger(__name__)

chunked_causal_lm_loss: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None
try:
    from quaff_core.loss import chunked_causal_lm_loss
except ImportError:  # the engine's loss module is optional: fall back to the model's own loss
    chunked_causal_lm_loss = None


def _causal_parts(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """(decoder backbone, output head) of a (PEFT-wrapped) causal LM, or None if not found."""
    unwrap = getattr(model, "get_base_model", None)
    inner = unwrap() if callable(unwrap) else model
    get_decoder = getattr(inner, "get_decoder", None)
    get_head = getattr(inner, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    backbone, head = get_decoder(), get_head()
    if not isinstance(head, nn.Linear) or not isinstance(backbone, nn.Module):
        return None
    return backbone, head


def logits_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, total) next-token argmax hits: logits [B, T, V], labels int64 [B, T]."""
    predicted = logits[:, :-1].argmax(dim=-1)
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    return int((predicted[keep] == target[keep]).sum()), int(keep.sum())


class CausalLMTrainer(Trainer):
    """Trainer whose loss is the mean CE over labelled tokens, tracking token accuracy."""

    def __init__(self, *args: Any, chunked_loss: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_chunked_loss = chunked_loss and chunked_causal_lm_loss is not None
        # our loss is a per-batch mean: let Trainer divide it by the accumulation steps
        self.loss_is_scaled_for_ga = False
        self._train_counts = [0, 0]
        self._eval_counts = [0, 0, 0.0]

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """Mean next-token cross-entropy (float32 scalar) of the batch; counts correct tokens."""
        labels = inputs["labels"]
        parts = (
            _causal_parts(self.accelerator.unwrap_model(model)) if self.use_chunked_loss else None
        )
        outputs: Any = {}  # prediction_step reads logits from it; the chunked loss makes none
        if parts is not None and chunked_causal_lm_loss is not None:
            backbone, head = parts
            hidden = backbone(
                input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
            ).last_hidden_state
            loss, correct, total = chunked_causal_lm_loss(hidden, head, labels)
            n_correct, n_total = int(correct), int(total)
        else:
            outputs = model(**inputs)
            loss = outputs.loss
            n_correct, n_total = logits_accuracy(outputs.logits.detach(), labels)
        if model.training:
            self._train_counts[0] += n_correct
            self._train_counts[1] += n_total
        else:
            self._eval_counts[0] += n_correct
            self._eval_counts[1] += n_total
            self._eval_counts[2] += float(loss.detach()) * n_total
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add mean token accuracy (train, eval) and a token-weighted eval loss, then log."""
        if "loss" in logs and self._train_counts[1]:
            logs["mean_token_accuracy"] = self._train_counts[0] / self._train_counts[1]
            self._train_counts = [0, 0]
        if "eval_loss" in logs and self._eval_counts[1]:
            correct, total, loss_sum = self._eval_counts
            logs["eval_mean_token_accuracy"] = correct / total
            logs["eval_loss"] = loss_sum / total
            self._eval_counts = [0, 0, 0.0]
        super().log(logs, start_time)
