"""Outlier stability: the initial map's recall, re-measured on a batch during training."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel

from quaff_core.calibration.calibrate import calibrate
from quaff_core.train_events import EventKind
from quaff_core.training.stability import StabilityProbe, outlier_recall
from quaff_core.training.train import train
from tests.quaff_core.training.test_train import EXAMPLES, FAST, QUAFF, Recorder

V_PROJ = "model.layers.0.self_attn.v_proj"


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_recall_is_one_on_the_calibration_batch_and_drops_when_channels_move(
    tiny_llama: PreTrainedModel,
) -> None:
    batch = _batch()
    initial = calibrate(tiny_llama, [batch], strategy="top_abs", max_ratio=0.05)
    assert initial.num_channels > 0
    assert outlier_recall(tiny_llama, [batch], initial).overall == 1.0
    # silence the input-layernorm gains of the initial outlier channels of layer 0's attention
    norm = tiny_llama.model.layers[0].input_layernorm
    with torch.no_grad():
        norm.weight[list(initial.layers[V_PROJ])] = 0.0
    moved = outlier_recall(tiny_llama, [batch], initial)
    assert moved.per_layer[V_PROJ] == 0.0
    assert moved.overall < 1.0


def test_probe_measures_the_remembered_batch_and_keeps_the_mode(
    tiny_llama: PreTrainedModel,
) -> None:
    batch = _batch()
    initial = calibrate(tiny_llama, [batch], strategy="top_abs", max_ratio=0.05)
    probe = StabilityProbe(tiny_llama, initial)
    assert probe.measure(1) is None  # no batch yet
    tiny_llama.train()
    probe.remember({**batch, "labels": batch["input_ids"]})
    assert set(probe.batch or {}) == {"input_ids", "attention_mask"}
    assert probe.measure(2) == 1.0
    assert probe.points == [{"step": 2, "recall": 1.0}]
    assert tiny_llama.training


def test_quaff_training_reports_recall_at_each_checkpoint(tmp_path: Path) -> None:
    config = type(QUAFF)(**{**QUAFF.to_dict(), "save_steps": 3, "max_steps": 5})
    calls = Recorder()
    train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    points = calls.of(EventKind.OUTLIER_STABILITY)
    assert [e.data["step"] for e in points] == [3, 5]
    assert all(0.0 <= e.data["recall"] <= 1.0 for e in points)
    assert points[0].message.startswith("Outlier stability at step 3: ")


def test_an_unquantized_job_reports_no_stability(tmp_path: Path) -> None:
    config = type(FAST)(**{**FAST.to_dict(), "save_steps": 2, "max_steps": 2})
    calls = Recorder()
    train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    assert not calls.of(EventKind.OUTLIER_STABILITY)
