"""Training progress for the terminal: a one-line bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from cli.common import clock
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import Control, NullCallbacks, ProgressEvent

BAR_WIDTH = 24


def _eta(finish: int | None) -> str:
    """Seconds until `finish` (unix time) as m:ss."""
    return "?" if finish is None else clock(finish - time.time())


def describe(event: ProgressEvent) -> str:
    """The metrics of one event on one line."""
    parts = [event.message()]
    if event.train_mean_token_accuracy is not None:
        parts.append(f"accuracy={event.train_mean_token_accuracy:.3f}")
    if event.valid_mean_token_accuracy is not None:
        parts.append(f"validation accuracy={event.valid_mean_token_accuracy:.3f}")
    if event.learning_rate is not None:
        parts.append(f"lr={event.learning_rate:.2e}")
    if event.tokens_per_second is not None:
        parts.append(f"{event.tokens_per_second:.0f} tok/s")
    parts.append(f"eta {_eta(event.estimated_finish)}")
    return ", ".join(parts)


class TerminalCallbacks(NullCallbacks):
    """Print progress and events; the first Ctrl-C pauses at the next step (checkpoint + stop)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.pause_requested = False
        self._bar_open = False
        self._previous: Any = None

    def __enter__(self) -> TerminalCallbacks:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)
        self._end_bar()

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """First Ctrl-C: pause after this step; second: interrupt."""
        if self.pause_requested:
            raise KeyboardInterrupt
        self.pause_requested = True
        self.line("Pausing after this step (Ctrl-C again to abort)...")

    def _end_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False

    def line(self, text: str) -> None:
        """Print one line (closing an open progress bar first)."""
        self._end_bar()
        print(text, file=self.stream, flush=True)

    def on_progress(self, event: ProgressEvent) -> None:
        """Redraw the bar on a TTY; print a line per step otherwise."""
        if not self.tty or event.valid_loss is not None:
            self.line(describe(event))
            return
        done = int(BAR_WIDTH * event.step / max(event.total_steps, 1))
        bar = "#" * done + "." * (BAR_WIDTH - done)
        loss = f"{event.train_loss:.4f}" if event.train_loss is not None else "?"
        eta = _eta(event.estimated_finish)
        text = f"\r[{bar}] {event.step}/{event.total_steps} loss {loss} eta {eta}"
        self.stream.write(text.ljust(79))
        self.stream.flush()
        self._bar_open = True

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        """Say where the checkpoint is."""
        self.line(f"Checkpoint saved at step {step}: {path}")

    def on_event(self, event: TrainEvent) -> None:
        """Phase events (checkpoints are printed by on_checkpoint)."""
        if event.kind != EventKind.CHECKPOINT_SAVED:
            self.line(event.message)

    def control(self) -> Control:
        """Pause once Ctrl-C was pressed."""
        return "pause" if self.pause_requested else "continue"
