"""Reinforcement fine-tuning through `train`: TRL's GRPO on the Quaff base, scored by a grader;
the reward moves, its metrics are reported, and the adapter is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from quaff_core.data.jsonl import examples_from_dicts
from quaff_core.graders.registry import GradingContext
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.rft import GraderReward, completion_text, prompt_dataset
from quaff_core.training.train import train
from tests.quaff_core.training.test_train import Recorder

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


@pytest.mark.slow
def test_pause_then_resume_continues_from_the_checkpoint(tmp_path: Path) -> None:
    """5 steps straight vs 2 + pause + resume 3: the resumed run ends at the same step with the
    same adapter (the sampling RNG is restored with the checkpoint)."""
    config = TrainConfig(
        method="reinforcement",
        n_epochs=1,
        batch_size=2,
        learning_rate=0.05,
        lora_r=4,
        max_seq_length=64,
        rft_max_completion_tokens=8,
        outlier_strategy="top_abs",
    )
    examples = examples_from_dicts(ROWS)

    def run(out: Path, **kw: Any) -> Any:
        reward = GraderReward(GRADER, GradingContext())
        return train("tiny-llama", examples, out, config=config, reward=reward, **kw)

    straight = run(tmp_path / "a")
    pauser = Recorder("pause", at=2)
    first = run(tmp_path / "b", callbacks=pauser)
    assert (first.stopped, first.final_step) == ("paused", 2)
    assert first.checkpoint_dir is not None
    resumed = run(tmp_path / "b", resume_from=first.checkpoint_dir)
    assert (resumed.stopped, resumed.final_step) == ("completed", 5)
    assert straight.adapter_dir is not None
    assert resumed.adapter_dir is not None
    expected = load_file(str(straight.adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    assert any(t.abs().sum() > 0 for k, t in got.items() if "lora_B" in k)  # it learned
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-4)
