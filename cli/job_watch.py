"""How `quaff jobs watch` and `quaff jobs events` print events: on a terminal or into a log."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, TextIO

from cli.common import clock

BAR_WIDTH = 30
RATE_WINDOW = 20  # metrics events the step rate (so the ETA) is measured over


class StepRate:
    """Steps per second from the server timestamps of the latest metrics events (so the ETA)."""

    def __init__(self, window: int = RATE_WINDOW) -> None:
        self.points: deque[tuple[int, int]] = deque(maxlen=window)

    def add(self, created_at: int, step: int) -> None:
        """Record that `step` was done at `created_at`; a repeated step (a resumed run) restarts."""
        if self.points and step <= self.points[-1][1]:
            self.points.clear()
        self.points.append((created_at, step))

    def seconds_left(self, total_steps: int | None) -> float | None:
        """Seconds until `total_steps` at the recent rate; None until the rate is known."""
        if not total_steps or len(self.points) < 2:
            return None
        (t0, s0), (t1, s1) = self.points[0], self.points[-1]
        if t1 <= t0:
            return None
        return max(0, total_steps - s1) * (t1 - t0) / (s1 - s0)


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) else None


def metrics_text(data: dict[str, Any], valid_loss: float | None, eta: float | None) -> str:
    """`step 5/10 loss 1.2345 val 1.3000 acc 0.412 lr 2.00e-04 812 tok/s eta 0:42`."""
    step, total = int(data.get("step") or 0), int(data.get("total_steps") or 0)
    parts = [f"step {step}/{total}"]
    loss, accuracy = _number(data, "train_loss"), _number(data, "train_mean_token_accuracy")
    rate, speed = _number(data, "learning_rate"), _number(data, "tokens_per_second")
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if valid_loss is not None:
        parts.append(f"val {valid_loss:.4f}")
    if accuracy is not None:
        parts.append(f"acc {accuracy:.3f}")
    if rate is not None:
        parts.append(f"lr {rate:.2e}")
    if speed is not None:
        parts.append(f"{speed:.0f} tok/s")
    parts.append(f"eta {clock(eta) if eta is not None else '?'}")
    return " ".join(parts)


def bar(data: dict[str, Any]) -> str:
    """`[#####-----]` for the step of a metrics event."""
    step, total = int(data.get("step") or 0), int(data.get("total_steps") or 0)
    done = int(BAR_WIDTH * min(step, total) / total) if total else 0
    return f"[{'#' * done}{'-' * (BAR_WIDTH - done)}]"


def stamp(event: dict[str, Any]) -> str:
    """An event's time as local `YYYY-MM-DD HH:MM:SS`."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(event.get("created_at") or 0)))


class EventPrinter:
    """On a terminal a metrics event redraws one progress line in place (`\\r`); into a file or a
    pipe each becomes a plain line. Message events always get their own line."""

    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.rate = StepRate()
        self.valid_loss: float | None = None
        self.bar_shown = False
        self.width = 0

    def __call__(self, event: dict[str, Any]) -> None:
        """Print one event."""
        data = event.get("data")
        if event.get("type") == "metrics" and isinstance(data, dict):
            self._metrics(event, data)
        else:
            self._end_bar()
            self.out.write(f"{event.get('level', 'info')}: {event.get('message', '')}\n")
        self.out.flush()

    def _metrics(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        self.rate.add(int(event.get("created_at") or 0), int(data.get("step") or 0))
        valid_loss = _number(data, "valid_loss")
        if valid_loss is not None:
            self.valid_loss = valid_loss
        eta = self.rate.seconds_left(data.get("total_steps"))
        text = metrics_text(data, self.valid_loss, eta)
        if not self.tty:
            self.out.write(text + "\n")
            return
        line = f"{bar(data)} {text}"
        self.out.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.bar_shown = True

    def _end_bar(self) -> None:
        if self.bar_shown:
            self.out.write("\n")
            self.bar_shown = False
            self.width = 0

    def close(self) -> None:
        """End an open progress line."""
        self._end_bar()
        self.out.flush()
