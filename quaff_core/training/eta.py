"""Time left in a run: training steps at their recent pace, plus the evaluations and checkpoint
saves still due (those of the current step and the final ones included) and the adapter's save;
shown from the first step, whose time (compile warm-up runs before it) stands in for the pace
until later steps measure it."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

RECENT_STEPS = 20
FORWARD_SHARE = 0.35  # an evaluation batch costs about this share of a training step
DEFAULT_SAVE_SECONDS = 2.0


def due(step: int, total: int, every: int) -> int:
    """How many of the events scheduled every `every` steps (and at the end) are still ahead when
    `step` is logged: a step's own evaluation and save run after its log."""
    if step > total:
        return 0
    if not every:
        return 1
    scheduled = total // every - max(step - 1, 0) // every
    return scheduled + (0 if total % every == 0 else 1)


@dataclass
class EtaClock:
    """Measures steps, evaluations and saves as they happen; `remaining` extrapolates."""

    eval_every: int
    save_every: int
    eval_batches: int
    has_eval: bool
    started: float = 0.0
    steps_seen: int = 0
    first_step: float | None = None
    step_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_STEPS))
    eval_seconds: float | None = None
    save_seconds: float | None = None

    def start(self, now: float) -> None:
        """Training (re)starts now."""
        self.started, self.steps_seen = now, 0

    def step_done(self, now: float) -> None:
        """An optimizer step ended (logged); the first one after a start is warm-up, not pace."""
        self.steps_seen += 1
        if self.steps_seen > 1:
            self.step_seconds.append(now - self.started)
        elif self.first_step is None:
            self.first_step = now - self.started
        self.started = now

    def eval_done(self, now: float) -> None:
        """An evaluation ended."""
        self.eval_seconds = now - self.started
        self.started = now

    def save_done(self, now: float) -> None:
        """A checkpoint save ended."""
        self.save_seconds = now - self.started
        self.started = now

    def per_step(self) -> float | None:
        """Seconds per training step at the recent pace (the first step's until a second one ends;
        None before any)."""
        if not self.step_seconds:
            return self.first_step
        return sum(self.step_seconds) / len(self.step_seconds)

    def remaining(self, step: int, total: int) -> float | None:
        """Seconds until the run ends after `step` of `total` is logged (evaluations and saves
        still due, the adapter's save included; 0 once it is written)."""
        pace = self.per_step()
        if pace is None:
            return None
        evals = due(step, total, self.eval_every) if self.has_eval else 0
        saves = due(step, total, self.save_every)
        eval_cost = self.eval_seconds
        if eval_cost is None:
            eval_cost = pace * self.eval_batches * FORWARD_SHARE
        save_cost = self.save_seconds if self.save_seconds is not None else DEFAULT_SAVE_SECONDS
        adapter = save_cost if step <= total else 0.0
        seconds = pace * max(total - step, 0) + evals * eval_cost + saves * save_cost + adapter
        return seconds if math.isfinite(seconds) else None
