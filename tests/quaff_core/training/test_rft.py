"""Reinforcement fine-tuning through `train`: TRL's GRPO on the Quaff base, scored by a grader;
the reward moves, its metrics are reported, and the adapter is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quaff_core.data.jsonl import examples_from_dicts
from quaff_core.graders.registry import GradingContext
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.rft import GraderReward, completion_text, prompt_dataset
from quaff_core.training.train import train

# a byte-level random model writes 'a' or 'A' in 16 bytes about one time in eight: GRPO learns
# to write it more often
GRADER = {
    "type": "string_check",
    "name": "has_a",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.letter }}",
    "operation": "ilike",
}
ROWS = [
    {"messages": [{"role": "user", "content": f"Write the letter a ({i})"}], "letter": "a"}
    for i in range(10)
]


def test_prompts_carry_their_item_and_samples_their_text() -> None:
    dataset = prompt_dataset(examples_from_dicts(ROWS))
    assert dataset[0]["prompt"] == [{"role": "user", "content": "Write the letter a (0)"}]
    assert '"letter": "a"' in dataset[0]["item"]
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    reward = GraderReward(GRADER, GradingContext())
    logged: dict[str, float] = {}
    scores = reward(
        prompts=[[], []],
        completions=[[{"content": "xAx"}], [{"content": "xyz"}]],
        item=[dataset[0]["item"], dataset[1]["item"]],
        log_metric=logged.__setitem__,
    )
    assert scores == [1.0, 0.0]
    assert logged == {"grader/errors": 0.0}


@pytest.mark.slow
def test_grpo_on_tiny_llama_moves_the_reward(tmp_path: Path) -> None:
    config = TrainConfig(
        method="reinforcement",
        n_epochs=3,
        batch_size=2,
        learning_rate=0.1,
        lr_scheduler="constant",
        lora_r=8,
        max_seq_length=64,
        rft_max_completion_tokens=16,
        rft_compute_multiplier=2.0,
        outlier_strategy="top_abs",
        n_checkpoints=2,
    )
    result = train(
        "tiny-llama",
        examples_from_dicts(ROWS),
        tmp_path,
        config=config,
        reward=GraderReward(GRADER, GradingContext()),
    )
    assert result.stopped == "completed"
    assert result.adapter_dir is not None
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    rewards: list[Any] = [
        m["train_reward_mean"] for m in result.metrics if "train_reward_mean" in m
    ]
    assert len(rewards) == 15
    assert all("train_grader_error_fraction" in m for m in result.metrics if "train_loss" in m)
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.1


def test_a_reinforcement_run_needs_its_reward(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs reward"):
        train(
            "tiny-llama",
            examples_from_dicts(ROWS),
            tmp_path,
            config=TrainConfig(method="reinforcement"),
        )
