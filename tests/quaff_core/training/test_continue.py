"""`train(start_from=...)`: a run continues from an earlier adapter, its outlier map and state."""

from __future__ import annotations

from pathlib import Path

import pytest

from quaff_core.options.train_config import TrainConfig
from quaff_core.train_events import EventKind
from quaff_core.training.train import train
from tests.quaff_core.training.test_train import EXAMPLES, Recorder

# One batch holds every example, so each step's training loss is measured on the same batch as
# the earlier run's final validation loss. The two differ by the outlier-scale update a training
# forward makes (eval forwards only read the scale): measured below 1e-3 here.
SAME_BATCH_TOLERANCE = 0.01
CONFIG = TrainConfig(
    n_epochs=4,
    batch_size=len(EXAMPLES),
    learning_rate=1e-3,
    lr_scheduler="constant",
    max_seq_length=64,
    lora_r=4,
    quantization="quaff",
    outlier_strategy="top_abs",
    outlier_max_ratio=0.05,
)


def losses(calls: Recorder) -> tuple[list[float], list[float]]:
    """Training and validation losses in the order reported."""
    train_losses = [e.train_loss for e in calls.progress if e.valid_loss is None]
    valid = [e.valid_loss for e in calls.progress if e.valid_loss is not None]
    return [x for x in train_losses if x is not None], valid


def test_continued_run_starts_where_the_earlier_one_ended(tmp_path: Path) -> None:
    first_calls = Recorder()
    first = train(
        "tiny-llama",
        EXAMPLES,
        tmp_path / "first",
        config=CONFIG,
        validation_data=EXAMPLES,
        callbacks=first_calls,
    )
    assert first.adapter_dir is not None
    first_train, first_valid = losses(first_calls)
    assert first_train[-1] < first_train[0] - 0.3
    second_calls = Recorder()
    train(
        "tiny-llama",
        EXAMPLES,
        tmp_path / "second",
        config=CONFIG,
        callbacks=second_calls,
        start_from=first.adapter_dir,
    )
    second_train, _ = losses(second_calls)
    assert abs(second_train[0] - first_valid[-1]) < SAME_BATCH_TOLERANCE
    assert second_train[0] < first_train[-1]  # after the last update of the first run
    # the outlier map came with the adapter: no second calibration
    assert not second_calls.of(EventKind.CALIBRATING)
    assert second_calls.of(EventKind.OUTLIER_MAP_REUSED)


def test_start_from_an_adapter_of_another_shape_is_refused(tmp_path: Path) -> None:
    quick = TrainConfig(**{**CONFIG.to_dict(), "n_epochs": 1})
    first = train("tiny-llama", EXAMPLES, tmp_path / "first", config=quick)
    assert first.adapter_dir is not None
    other = TrainConfig(**{**quick.to_dict(), "lora_r": 8})
    with pytest.raises(ValueError, match="another shape"):
        train(
            "tiny-llama", EXAMPLES, tmp_path / "second", config=other, start_from=first.adapter_dir
        )
