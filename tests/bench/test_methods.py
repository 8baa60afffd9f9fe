"""bench.methods: the side-by-side table and the step clock (no training here)."""

from __future__ import annotations

from bench.methods import LEARNING_RATES, StepClock, table
from quaff_core.options.spec import PEFT_METHODS
from quaff_core.training.callbacks import ProgressEvent


def test_every_method_has_a_rate_and_a_row() -> None:
    assert set(LEARNING_RATES) == set(PEFT_METHODS)
    rows = [
        {"method": m, "quantization": q, "step_seconds": s, "valid_loss": 5.0}
        for m in PEFT_METHODS
        for q, s in (("quaff", 2.0), ("none", 1.0))
    ]
    lines = table(rows).splitlines()
    assert len(lines) == 1 + len(PEFT_METHODS)
    assert lines[1].split()[:4] == ["lora", "2.000", "1.000", "2.00"]


def test_step_clock_keeps_the_last_validation_loss() -> None:
    clock = StepClock()
    clock.on_progress(ProgressEvent(step=1, total_steps=2, epoch=0.5, train_loss=3.0))
    clock.on_progress(ProgressEvent(step=2, total_steps=2, epoch=1.0, valid_loss=2.5))
    assert len(clock.times) == 1
    assert clock.valid_loss == 2.5
