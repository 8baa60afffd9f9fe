"""Training callbacks: the protocol the service implements, and the bridge from HF `Trainer`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from quaff_core.file_names import CHECKPOINT_PREFIX
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.eta import EtaClock

logger = logging.getLogger(__name__)

Control = Literal["continue", "checkpoint", "cancel", "pause"]
CONTROLS: tuple[Control, ...] = ("continue", "checkpoint", "cancel", "pause")
# TRL's DPO log keys -> the names of a DPO job's metrics (train_ / valid_ prefixed)
PREFERENCE_METRICS = {
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margin",
    "rewards/accuracies": "rewards_accuracy",
    "logps/chosen": "logps_chosen",
    "logps/rejected": "logps_rejected",
}


# TRL's GRPO log keys -> the names of a reinforcement job's metrics (train_ / valid_ prefixed);
# a multi grader's sub-scores `grader/<name>` become `grader_<name>`
REWARD_METRICS = {
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "reward_zero_std_fraction",
    "completions/mean_length": "completion_mean_tokens",
    "grader/errors": "grader_error_fraction",
}
METHOD_METRICS = {**PREFERENCE_METRICS, **REWARD_METRICS}


def preference_metrics(logs: dict[str, float], *, evaluation: bool) -> dict[str, float]:
    """The DPO or GRPO metrics of one TRL log, as `train_rewards_margin`, `valid_reward_mean`..."""
    source, target = ("eval_", "valid_") if evaluation else ("", "train_")
    found = {
        target + name: float(logs[source + key])
        for key, name in METHOD_METRICS.items()
        if source + key in logs
    }
    for key, value in logs.items():
        sub = key.removeprefix(source)
        if key.startswith(source) and sub.startswith("grader/") and sub not in METHOD_METRICS:
            found[target + "grader_" + sub.removeprefix("grader/")] = float(value)
    return found


@dataclass(frozen=True)
class ProgressEvent:
    """Progress after an optimizer step (or an evaluation at that step); None = not measured."""

    step: int
    total_steps: int
    epoch: float
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    trained_tokens: int = 0
    estimated_finish: int | None = None
    preference: Mapping[str, float] | None = None  # DPO and GRPO: `preference_metrics`

    def metrics(self) -> dict[str, Any]:
        """The API's metrics-event `data` object (a DPO job's reward metrics included)."""
        data = asdict(self)
        del data["epoch"], data["estimated_finish"], data["trained_tokens"], data["preference"]
        return {**data, **(self.preference or {})}

    def message(self) -> str:
        """The API's metrics-event message: "Step i/N: training loss=…"."""
        parts = []
        if self.train_loss is not None:
            parts.append(f"training loss={self.train_loss:.4f}")
        if self.valid_loss is not None:
            parts.append(f"validation loss={self.valid_loss:.4f}")
        reward = (self.preference or {}).get("train_reward_mean")
        if reward is not None:
            parts.append(f"reward={reward:.4f}")
        return f"Step {self.step}/{self.total_steps}: " + ", ".join(parts)


@runtime_checkable
class TrainCallbacks(Protocol):
    """What `train` reports to and asks of its caller (the worker, the CLI, tests)."""

    def on_progress(self, event: ProgressEvent) -> None:
        """A training step or an evaluation finished."""

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        """A resumable checkpoint was written at `path`."""

    def on_event(self, event: TrainEvent) -> None:
        """A phase event (calibrating, quantized, checkpoint saved, ...), typed by its kind."""

    def control(self) -> Control:
        """Asked between steps: "continue", "checkpoint" (save one now and go on), "cancel" (stop
        now) or "pause" (checkpoint, stop)."""


class NullCallbacks:
    """Callbacks that ignore every report and never stop training; subclass to override some."""

    def on_progress(self, event: ProgressEvent) -> None:
        """Ignore progress."""

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        """Ignore checkpoints."""

    def on_event(self, event: TrainEvent) -> None:
        """Ignore phase events."""

    def control(self) -> Control:
        """Always continue."""
        return "continue"


class HFBridge(TrainerCallback):
    """Translate HF Trainer callbacks into `TrainCallbacks` calls and stop/pause requests."""

    def __init__(
        self,
        callbacks: TrainCallbacks,
        *,
        save_steps: int,
        eval_steps: int,
        has_eval: bool,
        on_save: Callable[[Path], None],
        eval_batches: int = 0,
    ) -> None:
        self.callbacks = callbacks
        self.eta = EtaClock(eval_steps, save_steps, eval_batches, has_eval)
        self.save_steps = save_steps
        self.eval_steps = eval_steps
        self.has_eval = has_eval
        self.on_save_hook = on_save
        self.stopped: Control = "continue"
        self.history: list[dict[str, Any]] = []
        self.last_checkpoint: Path | None = None
        self._last_time = 0.0
        self._last_tokens = 0
        self._last_train: dict[str, Any] = {}

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Start the clocks (after a resume, from the restored step)."""
        self._last_time = time.monotonic()
        self._last_tokens = state.num_input_tokens_seen
        self.eta.start(self._last_time)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Schedule checkpoints and evaluations."""
        step, at_end = state.global_step, state.global_step >= state.max_steps
        if (self.save_steps and step % self.save_steps == 0) or at_end:
            control.should_save = True
        if self.has_eval and ((self.eval_steps and step % self.eval_steps == 0) or at_end):
            control.should_evaluate = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        """Turn a training or evaluation log into a ProgressEvent."""
        logs = logs or {}
        now = time.monotonic()
        tokens = int(state.num_input_tokens_seen)
        if "loss" in logs:
            elapsed = now - self._last_time
            rate = (tokens - self._last_tokens) / elapsed if elapsed > 0 else None
            self._last_time, self._last_tokens = now, tokens
            self.eta.step_done(now)
            remaining = self.eta.remaining(state.global_step, state.max_steps)
            self._last_train = {
                "train_loss": float(logs["loss"]),
                "train_mean_token_accuracy": logs.get("mean_token_accuracy"),
                "learning_rate": logs.get("learning_rate"),
                "tokens_per_second": round(rate, 1) if rate is not None else None,
                "estimated_finish": int(time.time() + remaining) if remaining is not None else None,
                "preference": preference_metrics(logs, evaluation=False) or None,
            }
            fields = dict(self._last_train)
        elif "eval_loss" in logs:
            self.eta.eval_done(now)
            valid = preference_metrics(logs, evaluation=True)
            fields = {
                **self._last_train,
                "valid_loss": float(logs["eval_loss"]),
                "valid_mean_token_accuracy": logs.get("eval_mean_token_accuracy"),
            }
            if valid:
                fields["preference"] = {**(self._last_train.get("preference") or {}), **valid}
        else:
            return
        event = ProgressEvent(
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=float(state.epoch or 0.0),
            trained_tokens=tokens,
            **fields,
        )
        self.history.append({"step": event.step, "epoch": event.epoch, **event.metrics()})
        self.callbacks.on_progress(event)
        if "loss" in logs:
            self._poll(state, control)

    def _poll(self, state: TrainerState, control: TrainerControl) -> None:
        """Ask the caller between steps: checkpoint saves this step; cancel stops now; pause
        checkpoints this step and stops."""
        decision = self.callbacks.control()
        if decision not in CONTROLS:
            raise ValueError(f"control() must return one of {CONTROLS}, got {decision!r}")
        if decision == "checkpoint":
            control.should_save = True
            return
        if decision == "continue" or state.global_step >= state.max_steps:
            return
        self.stopped = decision
        control.should_training_stop = True
        control.should_evaluate = False
        control.should_save = decision == "pause"

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Add the Quaff files to the checkpoint HF just wrote, then report it."""
        path = Path(str(args.output_dir)) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        self.on_save_hook(path)
        self.last_checkpoint = path
        metrics = next(
            (dict(h) for h in reversed(self.history) if h["step"] == state.global_step), {}
        )
        self.callbacks.on_event(
            TrainEvent(
                EventKind.CHECKPOINT_SAVED,
                f"Checkpoint saved at step {state.global_step}",
                {"step": state.global_step},
            )
        )
        self.callbacks.on_checkpoint(state.global_step, path, metrics)
        self.eta.save_done(time.monotonic())
