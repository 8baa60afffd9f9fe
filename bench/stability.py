"""Outlier stability: re-measure outlier channels during a Quaff fine-tune, recall of the first map.

The paper's hypothesis is that the activation outlier channels found once by calibration keep
their positions while LoRA fine-tunes the model. `measure_outliers` applies the calibration rule
(`quaff_core.calibration`) to the inputs of every base projection of a model as it is *now*
(plain `nn.Linear`, or `QuaffLinear` under LoRA); `OutlierTracker` is a training callback that
does so every K optimizer steps and records `initial_map.overlap(current)` (per layer, overall).
Used by bench/quality.py on its Quaff run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from quaff_core.calibration import calibrate
from quaff_core.callbacks import NullCallbacks, ProgressEvent
from quaff_core.outliers import OutlierMap

logger = logging.getLogger(__name__)


@torch.no_grad()
def measure_outliers(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], like: OutlierMap
) -> OutlierMap:
    """Outlier channels of `model`'s base projections now, by `like`'s strategy and thresholds.

    batches: dicts with input_ids int64 [B, T] and optionally attention_mask [B, T] (0 = ignore).
    `calibrate` measures the QuaffLinear inputs of a converted model, in eval mode (momentum state
    untouched), and restores the mode.
    """
    return calibrate(
        model,
        batches,
        strategy=like.strategy,
        threshold=like.threshold,
        max_ratio=like.max_ratio,
        model_id=like.model_id,
    )


@dataclass
class RecallPoint:
    """Recall of the initial map in a re-measured one at `step` (per layer and overall)."""

    step: int
    overall: float
    per_layer: dict[str, float]
    channels: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "step": self.step,
            "overall": self.overall,
            "per_layer": self.per_layer,
            "channels": self.channels,
        }


@dataclass
class OutlierTracker(NullCallbacks):
    """Training callback: every `every` steps, re-measure outliers of `model` and record recall.

    `model` is the object `train` converts and wraps in place (the base passed to it), so its
    forward is the model being trained. `points` collects one `RecallPoint` per measurement.
    """

    model: nn.Module
    batches: list[dict[str, torch.Tensor]]
    initial: OutlierMap
    every: int
    points: list[RecallPoint] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Validate the schedule."""
        if self.every < 1:
            raise ValueError(f"every must be >= 1 step, got {self.every}")

    def record(self, step: int, model: nn.Module | None = None) -> RecallPoint:
        """Measure `model` (default: the tracked one) now; append the recall of the initial map."""
        current = measure_outliers(model or self.model, self.batches, self.initial)
        overlap = self.initial.overlap(current)
        point = RecallPoint(step, overlap.overall, overlap.per_layer, current.num_channels)
        self.points.append(point)
        logger.info("step %d: outlier recall %.3f", step, point.overall)
        return point

    def on_progress(self, event: ProgressEvent) -> None:
        """After a training step (not an evaluation) at a multiple of `every`: measure."""
        if event.train_loss is None or event.valid_loss is not None:
            return
        if event.step % self.every == 0 and all(p.step != event.step for p in self.points):
            self.record(event.step)

    def on_event(self, message: str) -> None:
        """Keep phase messages (for the log)."""
        self.events.append(message)
