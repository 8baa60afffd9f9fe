"""Training's side of the device turnstile: hold the device, hand it over between steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quaff_core.train_events import TrainEvent
from quaff_core.training.callbacks import Control, ProgressEvent, TrainCallbacks
from store.device_lock import DeviceTurnstile


class DeviceSharing:
    """Wraps the job's callbacks: between optimizer steps an inference node may take a turn."""

    def __init__(self, inner: TrainCallbacks, turnstile: DeviceTurnstile) -> None:
        self.inner = inner
        self.turnstile = turnstile

    def on_progress(self, event: ProgressEvent) -> None:
        """Forward progress."""
        self.inner.on_progress(event)

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        """Forward checkpoints."""
        self.inner.on_checkpoint(step, path, metrics)

    def on_event(self, event: TrainEvent) -> None:
        """Forward phase events."""
        self.inner.on_event(event)

    def control(self) -> Control:
        """Between steps: let a waiting inference node run a step, then ask the job."""
        self.turnstile.yield_if_wanted()
        return self.inner.control()
