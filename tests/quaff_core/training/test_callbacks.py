"""Tests of the callback protocol and the progress event."""

from __future__ import annotations

from quaff_core.training.callbacks import NullCallbacks, ProgressEvent, TrainCallbacks


def test_progress_event_matches_the_api_metrics_event() -> None:
    event = ProgressEvent(
        step=3,
        total_steps=10,
        epoch=0.3,
        train_loss=1.23456,
        train_mean_token_accuracy=0.5,
        learning_rate=1e-4,
        tokens_per_second=100.0,
        trained_tokens=300,
        estimated_finish=1_800_000_000,
    )
    assert event.message() == "Step 3/10: training loss=1.2346"
    assert event.metrics() == {
        "step": 3,
        "total_steps": 10,
        "train_loss": 1.23456,
        "train_mean_token_accuracy": 0.5,
        "valid_loss": None,
        "valid_mean_token_accuracy": None,
        "learning_rate": 1e-4,
        "tokens_per_second": 100.0,
    }
    evaluated = ProgressEvent(step=4, total_steps=10, epoch=0.4, train_loss=1.0, valid_loss=2.0)
    assert evaluated.message() == "Step 4/10: training loss=1.0000, validation loss=2.0000"


def test_null_callbacks_satisfy_the_protocol_and_continue() -> None:
    callbacks = NullCallbacks()
    assert isinstance(callbacks, TrainCallbacks)
    assert callbacks.control() == "continue"
