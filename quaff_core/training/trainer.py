"""`CausalLMTrainer`: HF `Trainer` whose loss is `evaluate.batch_counts` (chunked by default)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Sampler
from transformers import Trainer

from quaff_core.lm.evaluation import batch_counts
from quaff_core.lm.tokenization import TokenizedDataset
from quaff_core.training.ddp import sum_over_ranks
from quaff_core.training.safe_state import SafeStateMixin
from quaff_core.training.sampler import LengthGroupedSampler

logger = logging.getLogger(__name__)


class CausalLMTrainer(SafeStateMixin, Trainer):
    """Trainer whose loss is the mean CE over labelled tokens, tracking token accuracy; its
    checkpoints hold no pickles (`SafeStateMixin`)."""

    def __init__(
        self,
        *args: Any,
        chunked_loss: bool = True,
        on_train_batch: Callable[[Mapping[str, Any]], None] | None = None,
        group_by_length: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length
        self.use_chunked_loss = chunked_loss
        self.on_train_batch = on_train_batch  # sees each training batch (the stability probe)
        # our loss is a per-batch mean: let Trainer divide it by the accumulation steps
        self.loss_is_scaled_for_ga = False
        self._train_counts = [0, 0]
        self._eval_counts = [0, 0, 0.0]

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int] | None:
        """Length-grouped batches (`group_by_length`), else HF's shuffled order."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or not isinstance(dataset, TokenizedDataset):
            return super()._get_train_sampler(train_dataset)
        lengths = [len(e.input_ids) for e in dataset.examples]
        return LengthGroupedSampler(lengths, self.args.train_batch_size, self.args.seed)

    def autocast_smart_context_manager(
        self, cache_enabled: bool | None = True
    ) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast around the loss as well: accelerate autocasts only the model's forward
        (and hands back its outputs in float32), while the chunked loss runs the output head after
        it; without this the head and its softmax ran in float32 (0.9 s of a 3 s SmolLM2 step)."""
        if self.args.bf16:
            return torch.autocast(
                self.args.device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled
            )
        return contextlib.nullcontext()

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """Mean next-token cross-entropy (float32 scalar) of the batch; counts correct tokens."""
        counts = batch_counts(model, inputs, chunked=self.use_chunked_loss)
        if model.training and self.on_train_batch is not None:
            self.on_train_batch(inputs)
        if model.training:
            self._train_counts[0] += counts.n_correct
            self._train_counts[1] += counts.n_tokens
        else:
            self._eval_counts[0] += counts.n_correct
            self._eval_counts[1] += counts.n_tokens
            self._eval_counts[2] += float(counts.loss.detach()) * counts.n_tokens
        # prediction_step reads logits from `outputs`; the chunked loss makes none
        return (counts.loss, {}) if return_outputs else counts.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add mean token accuracy (train, eval) and a token-weighted eval loss, then log; the
        counts are summed over the ranks (every rank logs at the same steps)."""
        if "loss" in logs:
            correct, total = sum_over_ranks(self._train_counts)
            if total:
                logs["mean_token_accuracy"] = correct / total
            self._train_counts = [0, 0]
        if "eval_loss" in logs:
            correct, total, loss_sum = sum_over_ranks(self._eval_counts)
            if total:
                logs["eval_mean_token_accuracy"] = correct / total
                logs["eval_loss"] = loss_sum / total
            self._eval_counts = [0, 0, 0.0]
        super().log(logs, start_time)
