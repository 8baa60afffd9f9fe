"""Reinforcement fine-tuning (OpenAI's method 'reinforcement') with TRL's `GRPOTrainer` on the
Quaff base: each prompt is sampled `rft_generations` times, a grader scores every sample, and
the adapter learns from each sample's reward relative to its group's (GRPO). No KL term
(beta 0), so no reference copy of the model is kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from datasets import Dataset, disable_progress_bars
from transformers import PreTrainedTokenizerBase
from trl import GRPOConfig, GRPOTrainer

from quaff_core.data.examples import Example, prompt_view
from quaff_core.graders import registry
from quaff_core.graders.templates import namespace
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.safe_state import SafeStateMixin

REWARD_NAME = "grader"


def prompt_dataset(examples: Sequence[Example]) -> Dataset:
    """TRL's conversational prompts, each with its line as JSON text (what graders read)."""
    rows = []
    for example in examples:
        prompt_view(example)  # refuses anything but a reinforcement prompt
        rows.append(
            {
                "prompt": [m.to_template() for m in example.messages],
                "item": json.dumps(dict(example.item or {})),
            }
        )
    return Dataset.from_list(rows)


def completion_text(completion: Any) -> str:
    """The sample's text: the last message's content of a conversational completion."""
    if isinstance(completion, list) and completion:
        return str(completion[-1].get("content") or "")
    return str(completion)


class GraderReward:
    """TRL's reward function: the grader's score of each sample against its item; the error
    fraction and a multi grader's sub-scores are logged as metrics."""

    __name__ = REWARD_NAME

    def __init__(self, grader: Mapping[str, Any], context: registry.GradingContext) -> None:
        self.grader, self.context = dict(grader), context

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        item: list[str],
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        """One reward per sample."""
        names = [
            namespace(completion_text(c), json.loads(i))
            for c, i in zip(completions, item, strict=True)
        ]
        outcomes = registry.grade_many(self.grader, names, self.context)
        if log_metric is not None and outcomes:
            log_metric("grader/errors", sum(o.error is not None for o in outcomes) / len(outcomes))
            for sub in outcomes[0].sub_scores:
                mean = sum(o.sub_scores.get(sub, 0.0) for o in outcomes) / len(outcomes)
                log_metric(f"grader/{sub}", mean)
        return [o.score for o in outcomes]


class QuaffGRPOTrainer(SafeStateMixin, GRPOTrainer):
    """TRL's GRPO trainer whose checkpoints hold no pickles (`SafeStateMixin`)."""

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """No hub model card in checkpoints (the adapter gets its own files)."""


def grpo_config(config: TrainConfig, args: dict[str, Any]) -> GRPOConfig:
    """TRL's config: a device batch holds `batch_size` prompts x their samples."""
    generations = config.rft_generations
    shared = {
        k: v
        for k, v in args.items()
        if k not in ("label_names", "prediction_loss_only", "include_num_input_tokens_seen")
    }
    shared["per_device_train_batch_size"] = config.batch_size * generations
    shared["per_device_eval_batch_size"] = config.batch_size * config.rft_eval_samples
    return GRPOConfig(
        **shared,
        num_generations=generations,
        num_generations_eval=config.rft_eval_samples,
        max_completion_length=config.rft_max_completion_tokens,
        beta=0.0,
        shuffle_dataset=True,
        log_completions=False,
    )


def rft_trainer(
    peft_model: Any,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    *,
    args: dict[str, Any],
    train_examples: Sequence[Example],
    valid_examples: Sequence[Example] | None,
    callbacks: list[Any],
    reward: GraderReward,
) -> QuaffGRPOTrainer:
    """The GRPO trainer of a PEFT model with the job's grader as its only reward."""
    disable_progress_bars()  # progress goes to the callbacks, not to stderr
    return QuaffGRPOTrainer(
        model=peft_model,
        reward_funcs=[reward],
        args=grpo_config(config, args),
        train_dataset=prompt_dataset(train_examples),
        eval_dataset=prompt_dataset(valid_examples) if valid_examples else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
