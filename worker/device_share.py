"""Training's side of the device turnstile: hold the device, hand it over inside a step.

Chat is interactive and a training step is seconds long, so training yields at layer granularity:
a forward pre-hook on every module checks (at most every `YIELD_INTERVAL_S`) whether an inference
node waits at the gate, and so does a gradient hook on layer inputs during the backward pass. An
inference node holds the device for a whole request, so a chat request waits for at most one
layer of training, not a step per generated token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quaff_core.graders.model_graders import Judge, JudgeReply
from quaff_core.train_events import TrainEvent
from quaff_core.training.callbacks import Control, ProgressEvent, TrainCallbacks
from store.device_lock import DeviceTurnstile

# how often (seconds of compute) training looks at the gate: a waiter's latency bound, and the
# cost of the check (an flock probe) amortised over at least this much work
YIELD_INTERVAL_S = 0.005


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
        """Between steps: let a waiting inference node run, then ask the job."""
        self.turnstile.yield_if_wanted()
        return self.inner.control()


class LayerYield:
    """Yields the turnstile to a waiter from inside forward and backward passes (rate-limited)."""

    def __init__(self, turnstile: DeviceTurnstile, interval: float = YIELD_INTERVAL_S) -> None:
        self.turnstile, self.interval = turnstile, interval
        self._checked = self._hooked = time.monotonic()
        self.yields = 0

    def maybe_yield(self) -> None:
        """Hand the device over if someone waits and `interval` has passed since the last look."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return
        if self.turnstile.contended():
            self.yields += 1
            self.turnstile.yield_if_wanted()
        self._checked = time.monotonic()

    def forward_pre_hook(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        """Look at the gate; mark this input so that its gradient looks again in backward."""
        self.maybe_yield()
        first = args[0] if args else None
        if (
            isinstance(first, torch.Tensor)
            and first.requires_grad
            and torch.is_grad_enabled()
            and time.monotonic() - self._hooked >= self.interval
        ):
            first.register_hook(self._on_grad)
            self._hooked = time.monotonic()

    def _on_grad(self, _grad: torch.Tensor) -> None:
        self.maybe_yield()


@contextmanager
def layer_yields(turnstile: DeviceTurnstile) -> Iterator[LayerYield]:
    """Within the block every module call of this process may yield the device to a waiter."""
    yielder = LayerYield(turnstile)
    handle = nn.modules.module.register_module_forward_pre_hook(yielder.forward_pre_hook)
    try:
        yield yielder
    finally:
        handle.remove()


class ReleasingJudge:
    """A grader's judge that lets the device go while it waits: the judge is an inference node on
    this host, which needs the device that the training step asking it holds."""

    def __init__(self, judge: Judge, turnstile: DeviceTurnstile) -> None:
        self.judge, self.turnstile = judge, turnstile

    def __call__(
        self, model: str, messages: list[dict[str, str]], sampling: dict[str, Any]
    ) -> JudgeReply:
        """The judge's reply, asked with the device released (and taken back after)."""
        held = self.turnstile.held
        self.turnstile.release()
        try:
            return self.judge(model, messages, sampling)
        finally:
            if held:
                self.turnstile.acquire()
