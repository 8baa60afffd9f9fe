"""Preference tuning (DPO) with TRL's `DPOTrainer` on the Quaff base: data, trainer, metrics.

The policy is the PEFT model on the int8 base; the reference is the same base with TRL's frozen
copy of the starting adapter ("ref"), so no second copy of the base is loaded (a fresh LoRA
adapter starts at zero, so its reference is the base itself). OpenAI's preference pairs
(`input`, `preferred_output`, `non_preferred_output`) become TRL's conversational
`prompt` / `chosen` / `rejected`, rendered by the base model's chat template.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from datasets import Dataset, disable_progress_bars
from transformers import PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer

from quaff_core.data.examples import Example, chosen_view
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.safe_state import SafeStateMixin

REFERENCE_ADAPTER = "ref"


def preference_dataset(examples: Sequence[Example]) -> Dataset:
    """TRL's conversational preference rows; tools travel as JSON text (TRL decodes them)."""
    rows: list[dict[str, Any]] = []
    for example in examples:
        chosen_view(example)  # refuses anything but a preference pair
        row: dict[str, Any] = {
            "prompt": [m.to_template() for m in example.messages],
            "chosen": [m.to_template() for m in example.chosen],
            "rejected": [m.to_template() for m in example.rejected],
        }
        tools = example.template_tools()
        row["tools"] = json.dumps(tools) if tools else None
        rows.append(row)
    if all(row["tools"] is None for row in rows):
        for row in rows:
            del row["tools"]
    return Dataset.from_list(rows)


class QuaffDPOTrainer(SafeStateMixin, DPOTrainer):
    """TRL's DPO trainer whose checkpoints hold no pickles (`SafeStateMixin`)."""

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """No hub model card in checkpoints (the adapter gets its own files)."""


def dpo_config(config: TrainConfig, args: dict[str, Any]) -> DPOConfig:
    """TRL's config: the shared training arguments plus beta and the sequence limit."""
    return DPOConfig(
        **args,
        beta=config.dpo_beta,
        max_length=config.max_seq_length,
        precompute_ref_log_probs=False,
        dataset_num_proc=None,
    )


def dpo_trainer(
    peft_model: Any,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    *,
    args: dict[str, Any],
    train_examples: Sequence[Example],
    valid_examples: Sequence[Example] | None,
    callbacks: list[Any],
) -> QuaffDPOTrainer:
    """The DPO trainer of a PEFT model (ref_model None: TRL's reference adapter)."""
    disable_progress_bars()  # progress goes to the callbacks, not to stderr
    return QuaffDPOTrainer(
        model=peft_model,
        ref_model=None,
        args=dpo_config(config, args),
        train_dataset=preference_dataset(train_examples),
        eval_dataset=preference_dataset(valid_examples) if valid_examples else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def drop_reference(peft_model: Any) -> None:
    """Remove TRL's frozen reference adapter before the adapter is saved."""
    if REFERENCE_ADAPTER in getattr(peft_model, "peft_config", {}):
        peft_model.delete_adapter(REFERENCE_ADAPTER)
