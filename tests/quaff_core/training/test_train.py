"""`quaff_core.training.train` on tiny-llama: learning, resume, cancel/pause, eval, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from quaff_core.data.jsonl import Example, Message
from quaff_core.errors import NothingToTrainError
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import Control, NullCallbacks, ProgressEvent
from quaff_core.training.train import train

EXAMPLES = [
    Example(
        "chat",
        i + 1,
        messages=(
            Message("user", f"What is {i} plus {i}?"),
            Message("assistant", f"{i} plus {i} is {2 * i}."),
        ),
    )
    for i in range(12)
]
FAST = TrainConfig(
    n_epochs=2,
    batch_size=2,
    learning_rate=3e-3,
    max_seq_length=64,
    lora_r=4,
    quantization="none",
)
QUAFF = TrainConfig(
    n_epochs=2,
    batch_size=2,
    learning_rate=3e-3,
    max_seq_length=64,
    lora_r=4,
    lora_dropout=0.1,
    quantization="quaff",
    outlier_strategy="top_abs",
    outlier_max_ratio=0.05,
)


class Recorder(NullCallbacks):
    """Records every report; answers `control()` with `decision` once step `at` was reported."""

    def __init__(self, decision: Control = "continue", at: int = 0) -> None:
        self.decision, self.at = decision, at
        self.progress: list[ProgressEvent] = []
        self.events: list[TrainEvent] = []
        self.checkpoints: list[tuple[int, Path, dict[str, Any]]] = []

    def on_progress(self, event: ProgressEvent) -> None:
        self.progress.append(event)

    def on_event(self, event: TrainEvent) -> None:
        self.events.append(event)

    def of(self, kind: EventKind) -> list[TrainEvent]:
        return [e for e in self.events if e.kind == kind]

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        self.checkpoints.append((step, path, metrics))

    def control(self) -> Control:
        reached = self.progress and self.progress[-1].step >= self.at
        return self.decision if self.at and reached else "continue"


def lora_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def test_loss_goes_down_and_adapter_is_complete(tmp_path: Path) -> None:
    config = TrainConfig(**{**FAST.to_dict(), "n_epochs": 3, "batch_size": 4})
    calls = Recorder()
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    assert result.stopped == "completed"
    assert result.final_step == result.total_steps == config.total_steps(len(EXAMPLES)) == 9
    losses = [e.train_loss for e in calls.progress if e.train_loss is not None]
    assert len(losses) == 9
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    last = calls.progress[-1]
    assert last.total_steps == 9
    assert 0.0 <= (last.train_mean_token_accuracy or -1) <= 1.0
    assert (last.tokens_per_second or 0) > 0
    assert last.estimated_finish is not None
    assert last.message().startswith("Step 9/9: training loss=")
    assert result.trained_tokens == last.trained_tokens > 0
    assert [m["step"] for m in result.metrics] == list(range(1, 10))
    adapter = result.adapter_dir
    assert adapter == tmp_path / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "chat_template.jinja"):
        assert (adapter / name).is_file(), name
    facts = json.loads((adapter / "quaff.json").read_text())
    assert facts["base_model"] == "tiny-llama"
    assert facts["quantization"] == {"method": "none"}
    assert facts["steps"] == 9
    assert facts["data"] == {"train_examples": len(EXAMPLES), "validation_examples": 0}
    card = (adapter / "README.md").read_text()
    assert card.splitlines()[:2] == ["---", "base_model: tiny-llama"]  # the public id, no path
    assert f"supervised fine-tuning on {len(EXAMPLES)} training examples" in card
    assert [e.data["steps"] for e in calls.of(EventKind.MODEL_SAVED)] == [9]
    # the adapter loads on a freshly built base and holds the trained weights
    base, _ = load_base_model("tiny-llama")
    loaded = PeftModel.from_pretrained(base, str(adapter))
    state = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    saved = lora_weights(adapter)
    assert len(saved) == len(state) == 2 * 7 * 2
    for key, value in saved.items():
        match = [v for k, v in state.items() if k.replace(".default", "") == key]
        assert len(match) == 1, key
        assert torch.equal(match[0], value), key


def test_pause_then_resume_equals_a_straight_run(tmp_path: Path) -> None:
    """8 steps straight vs 5 + pause + resume 3 (across the epoch boundary, with LoRA dropout
    and Quaff momentum): LoRA weights and momentum buffers equal within atol 1e-6, rtol 1e-5."""
    data = EXAMPLES[:8]
    straight = train("tiny-llama", data, tmp_path / "a", config=QUAFF)
    assert straight.final_step == 8
    pauser = Recorder("pause", at=5)
    first = train("tiny-llama", data, tmp_path / "b", config=QUAFF, callbacks=pauser)
    assert (first.stopped, first.final_step, first.adapter_dir) == ("paused", 5, None)
    ckpt = tmp_path / "b" / "checkpoints" / "checkpoint-5"
    assert first.checkpoint_dir == ckpt
    assert [(s, p) for s, p, _ in pauser.checkpoints] == [(5, ckpt)]
    for name in (
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "scheduler.json",
        "rng_state.safetensors",
        "rng_state.json",
        "trainer_state.json",
        "training_args.json",
        "quaff_momentum.safetensors",
        "outlier_map.json",
        "quaff.json",
    ):
        assert (ckpt / name).is_file(), name
    # tensors and JSON only: nothing in a checkpoint is a pickle
    suffixes = {p.suffix for p in ckpt.rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".json", ".jinja", ".txt", ".md"}, suffixes
    resumed = train(
        "tiny-llama", data, tmp_path / "b", config=QUAFF, resume_from=first.checkpoint_dir
    )
    assert (resumed.stopped, resumed.final_step) == ("completed", straight.final_step)
    assert resumed.trained_tokens == straight.trained_tokens
    assert straight.adapter_dir is not None
    assert resumed.adapter_dir is not None
    for name in ("adapter_model.safetensors", "quaff_momentum.safetensors"):
        expected = load_file(str(straight.adapter_dir / name))
        got = load_file(str(resumed.adapter_dir / name))
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5)
    assert resumed.metrics == straight.metrics
    assert straight.outlier_map is not None
    assert straight.outlier_map.num_channels > 0


@pytest.mark.parametrize(("decision", "at"), [("cancel", 3), ("pause", 2)])
def test_cancel_and_pause_are_honoured_within_one_step(
    tmp_path: Path, decision: Control, at: int
) -> None:
    calls = Recorder(decision, at=at)
    result = train("tiny-llama", EXAMPLES, tmp_path, config=FAST, callbacks=calls)
    assert result.final_step == at
    assert calls.progress[-1].step == at
    assert result.adapter_dir is None
    if decision == "cancel":
        assert result.stopped == "cancelled"
        assert result.checkpoint_dir is None
    else:
        assert result.stopped == "paused"
        assert result.checkpoint_dir == tmp_path / "checkpoints" / f"checkpoint-{at}"


def test_bf16_compute_trains_fp32_lora_on_an_int8_base(tmp_path: Path) -> None:
    config = TrainConfig(**{**QUAFF.to_dict(), "compute_dtype": "bfloat16", "max_steps": 4})
    calls = Recorder()
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    assert result.stopped == "completed"
    assert all(torch.isfinite(torch.tensor(e.train_loss)) for e in calls.progress)
    assert result.adapter_dir is not None
    weights = lora_weights(result.adapter_dir)
    assert weights
    assert {w.dtype for w in weights.values()} == {torch.float32}
    facts = json.loads((result.adapter_dir / "quaff.json").read_text())
    assert facts["config"]["compute_dtype"] == "bfloat16"


class CheckpointAt(Recorder):
    """Asks for an extra checkpoint once, right after step `at`."""

    def control(self) -> Control:
        return "checkpoint" if self.progress[-1].step == self.at else "continue"


def test_checkpoint_request_saves_and_training_goes_on(tmp_path: Path) -> None:
    config = TrainConfig(**{**FAST.to_dict(), "max_steps": 4})
    calls = CheckpointAt(at=2)
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    assert result.stopped == "completed"
    assert result.final_step == 4
    assert [s for s, _, _ in calls.checkpoints] == [2, 4]
    assert (tmp_path / "checkpoints" / "checkpoint-2" / "quaff.json").exists()
    assert result.adapter_dir is not None


def test_eval_and_checkpoints_every_n_steps(tmp_path: Path) -> None:
    config = TrainConfig(**{**FAST.to_dict(), "eval_steps": 2, "save_steps": 3, "max_steps": 5})
    calls = Recorder()
    result = train(
        "tiny-llama",
        EXAMPLES,
        tmp_path,
        config=config,
        validation_data=EXAMPLES[:3],
        callbacks=calls,
    )
    evals = [e for e in calls.progress if e.valid_loss is not None]
    assert [e.step for e in evals] == [2, 4, 5]
    assert all(0.0 <= (e.valid_mean_token_accuracy or -1) <= 1.0 for e in evals)
    assert evals[0].message().startswith("Step 2/5: training loss=")
    assert [m["step"] for m in result.metrics if "valid_loss" in m] == [2, 4, 5]
    assert [s for s, _, _ in calls.checkpoints] == [3, 5]
    assert calls.checkpoints[-1][2]["valid_loss"] == evals[-1].valid_loss
    assert [e.data["step"] for e in calls.of(EventKind.CHECKPOINT_SAVED)] == [3, 5]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "checkpoint-3",
        "checkpoint-5",
    ]


def test_same_seed_same_result_and_schedule(tmp_path: Path) -> None:
    config = TrainConfig(
        **{
            **FAST.to_dict(),
            "max_steps": 3,
            "lr_scheduler": "constant",
            "gradient_accumulation_steps": 2,
            "weight_decay": 0.1,
            "max_grad_norm": 0.5,
        }
    )
    runs = [
        train("tiny-llama", EXAMPLES, tmp_path / name, config=cfg)
        for name, cfg in (
            ("a", config),
            ("b", config),
            ("c", TrainConfig(**{**config.to_dict(), "seed": 7})),
        )
    ]
    a, b, c = (lora_weights(r.adapter_dir) for r in runs if r.adapter_dir is not None)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert [m["learning_rate"] for m in runs[0].metrics] == [3e-3] * 3
    # two batches of two per optimizer step
    assert runs[0].final_step == 3


def test_reusing_an_outlier_map_skips_calibration(tmp_path: Path) -> None:
    config = TrainConfig(**{**QUAFF.to_dict(), "max_steps": 1})
    first = train("tiny-llama", EXAMPLES, tmp_path / "a", config=config)
    assert first.outlier_map is not None
    path = tmp_path / "map.json"
    first.outlier_map.save(path)
    calls = Recorder()
    second = train(
        "tiny-llama", EXAMPLES, tmp_path / "b", config=config, outlier_map=path, callbacks=calls
    )
    assert not calls.of(EventKind.CALIBRATING)
    assert len(calls.of(EventKind.OUTLIER_MAP_REUSED)) == 1
    assert [e.data["layers"] for e in calls.of(EventKind.QUANTIZED)] == [14]
    assert second.outlier_map is not None
    assert second.outlier_map.layers == first.outlier_map.layers


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantization is 'none'"):
        train("tiny-llama", EXAMPLES, tmp_path, config=FAST, outlier_map=tmp_path / "m.json")
    with pytest.raises(ValueError, match="not a Quaff training checkpoint"):
        train("tiny-llama", EXAMPLES, tmp_path, config=FAST, resume_from=tmp_path)
    long = [Example("chat", 1, messages=(Message("user", "x" * 80), Message("assistant", "y")))]
    with pytest.raises(NothingToTrainError, match="raise max_seq_length"):
        train("tiny-llama", long, tmp_path, config=FAST)
    with pytest.raises(TypeError, match=r"list of quaff_core\.data\.examples\.Example"):
        train("tiny-llama", [{"text": "x"}], tmp_path, config=FAST)  # type: ignore[list-item]
