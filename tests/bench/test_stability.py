"""Re-measuring outlier channels during training: same rule as calibration, recall per step."""

from __future__ import annotations

import pytest
import torch

from bench.stability import OutlierTracker, measure_outliers
from quaff_core.calibration import calibrate, calibration_targets
from quaff_core.callbacks import ProgressEvent
from quaff_core.convert import convert_to_quaff
from quaff_core.models import load_tiny_llama
from quaff_core.peft import add_lora


def batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 200, (2, 2, 12), generator=g)
    mask = torch.ones(2, 2, 12, dtype=torch.long)
    mask[0, 1, 8:] = 0  # padding is ignored
    return [{"input_ids": ids[i], "attention_mask": mask[i]} for i in range(2)]


def test_measure_on_the_float_model_reproduces_calibrate() -> None:
    model, _ = load_tiny_llama()
    initial = calibrate(model, batches(), strategy="top_abs", max_ratio=0.05)
    again = measure_outliers(model, batches(), initial)
    assert initial.num_channels > 0
    assert again.layers == initial.layers
    assert again.tokens_seen == initial.tokens_seen == 44
    assert initial.overlap(again).overall == 1.0


def test_measure_finds_the_quaff_layers_under_lora() -> None:
    model, _ = load_tiny_llama()
    initial = calibrate(model, batches(), strategy="top_abs", max_ratio=0.05)
    convert_to_quaff(model, initial)
    peft_model = add_lora(model, r=4, alpha=8)
    assert set(calibration_targets(peft_model)) == set(initial.layers)
    current = measure_outliers(peft_model, batches(), initial)
    assert set(current.layers) == set(initial.layers)
    recall = initial.overlap(current)
    assert 0.5 <= recall.overall <= 1.0  # int8 noise may move a borderline channel, not most
    assert peft_model.training  # mode restored


def test_tracker_measures_every_k_training_steps_only() -> None:
    model, _ = load_tiny_llama()
    initial = calibrate(model, batches(), strategy="top_abs", max_ratio=0.05)
    tracker = OutlierTracker(model, batches(), initial, every=2)
    for step in (1, 2, 3, 4):
        tracker.on_progress(ProgressEvent(step=step, total_steps=4, epoch=0.0, train_loss=1.0))
    # an evaluation event at step 4 carries the last train loss too: not measured again
    tracker.on_progress(
        ProgressEvent(step=4, total_steps=4, epoch=0.0, train_loss=1.0, valid_loss=1.0)
    )
    assert [p.step for p in tracker.points] == [2, 4]
    assert all(p.overall == 1.0 for p in tracker.points)  # the model did not change
    assert tracker.points[0].channels == initial.num_channels
    assert set(tracker.points[0].to_dict()) == {"step", "overall", "per_layer", "channels"}


def test_tracker_rejects_a_zero_interval() -> None:
    model, _ = load_tiny_llama()
    initial = calibrate(model, batches(), strategy="top_abs", max_ratio=0.05)
    with pytest.raises(ValueError, match="every must be >= 1"):
        OutlierTracker(model, batches(), initial, every=0)
