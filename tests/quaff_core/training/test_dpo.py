"""DPO with TRL on the Quaff base: the preferred-vs-rejected margin grows; metrics are reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from torch import nn
from transformers import BatchEncoding, PreTrainedTokenizerBase

from quaff_core.data.examples import chosen_view
from quaff_core.data.jsonl import Example, Message
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.dpo import preference_dataset
from quaff_core.training.train import train
from tests.quaff_core.training.test_train import Recorder

PAIRS = [
    Example(
        "preference",
        i + 1,
        messages=(Message("user", f"Say the number {i}."),),
        chosen=(Message("assistant", f"The number is {i}."),),
        rejected=(Message("assistant", "No."),),
    )
    for i in range(12)
]
DPO = TrainConfig(
    method="dpo",
    dpo_beta=0.5,
    n_epochs=3,
    batch_size=4,
    learning_rate=5e-3,
    max_seq_length=64,
    lora_r=4,
    quantization="quaff",
    outlier_strategy="top_abs",
    outlier_max_ratio=0.05,
)


def margin(model: nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: list[Example]) -> float:
    """Mean of log p(chosen) - log p(rejected) over `pairs` (summed answer-token log-probs)."""
    total = 0.0
    for pair in pairs:
        prompt = [m.to_template() for m in pair.messages]
        prompt_ids = tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, return_dict=True
        )
        assert isinstance(prompt_ids, BatchEncoding)  # what return_dict=True gives
        start = len(prompt_ids["input_ids"])
        scores = []
        for answer in (pair.chosen, pair.rejected):
            rendered = tokenizer.apply_chat_template(
                [*prompt, answer[0].to_template()], return_dict=True
            )
            assert isinstance(rendered, BatchEncoding)
            ids = torch.tensor([list(rendered["input_ids"])])
            with torch.no_grad():
                logits = model(input_ids=ids).logits.float()
            logps = torch.log_softmax(logits[0, :-1], -1).gather(1, ids[0, 1:, None])[:, 0]
            scores.append(float(logps[start - 1 :].sum()))
        total += scores[0] - scores[1]
    return total / len(pairs)


def test_chosen_view_and_dataset_are_conversational() -> None:
    view = chosen_view(PAIRS[0])
    assert view.format == "chat"
    assert [m.role for m in view.messages] == ["user", "assistant"]
    rows = preference_dataset(PAIRS[:2])
    assert rows[0]["prompt"] == [{"role": "user", "content": "Say the number 0."}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "No."}]
    with pytest.raises(ValueError, match="preference pairs"):
        chosen_view(Example("text", 3, text="hello"))


def test_dpo_raises_the_margin_on_its_training_pairs(tmp_path: Path) -> None:
    calls = Recorder()
    result = train("tiny-llama", PAIRS, tmp_path, config=DPO, callbacks=calls)
    assert result.stopped == "completed"
    assert result.final_step == DPO.total_steps(len(PAIRS)) == 9
    rewards = [e.preference for e in calls.progress if e.preference]
    assert len(rewards) == 9
    assert {"train_rewards_margin", "train_rewards_accuracy", "train_rewards_chosen"} <= set(
        rewards[-1]
    )
    assert rewards[-1]["train_rewards_margin"] > rewards[0]["train_rewards_margin"]
    assert "train_rewards_margin" in calls.progress[-1].metrics()
    assert "train_rewards_margin" in result.metrics[-1]
    assert result.adapter_dir is not None
    assert not (result.adapter_dir / "ref").exists()  # TRL's reference adapter is not saved
    base, tokenizer = load_base_model("tiny-llama")
    before = margin(base, tokenizer, PAIRS)
    tuned = PeftModel.from_pretrained(base, str(result.adapter_dir)).eval()
    after = margin(tuned, tokenizer, PAIRS)
    assert after > before + 1.0, (before, after)


def test_dpo_pause_then_resume_equals_a_straight_run(tmp_path: Path) -> None:
    """9 steps straight vs 4 + pause + resume 5: the adapter equals within atol 1e-6, rtol 1e-5,
    and the checkpoint holds tensors and JSON only."""
    straight = train("tiny-llama", PAIRS, tmp_path / "a", config=DPO)
    pauser = Recorder("pause", at=4)
    first = train("tiny-llama", PAIRS, tmp_path / "b", config=DPO, callbacks=pauser)
    assert (first.stopped, first.final_step) == ("paused", 4)
    assert first.checkpoint_dir is not None
    suffixes = {p.suffix for p in first.checkpoint_dir.rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".json", ".jinja", ".txt", ".md"}, suffixes
    resumed = train(
        "tiny-llama", PAIRS, tmp_path / "b", config=DPO, resume_from=first.checkpoint_dir
    )
    assert (resumed.stopped, resumed.final_step) == ("completed", 9)
    assert straight.adapter_dir is not None
    assert resumed.adapter_dir is not None
    expected = load_file(str(straight.adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5)
