"""Outlier stability, the Quaff hypothesis made visible: are the outlier channels found once by
calibration still the outlier channels of the model being trained?

`measure_outliers` applies the calibration rule to the inputs of every base projection of a model
as it is now (plain `nn.Linear`, or `QuaffLinear` under an adapter), in eval mode, so the outlier
scales are not touched; `outlier_recall` is the share of the initial map's channels found again.
The trainer measures it at each checkpoint on that step's batch (`StabilityProbe`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from quaff_core.calibration.calibrate import calibrate
from quaff_core.quant.linear import quaff_layers
from quaff_core.quant.outlier_map import OutlierMap, Overlap
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import TrainCallbacks

logger = logging.getLogger(__name__)


@torch.no_grad()
def measure_outliers(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], like: OutlierMap
) -> OutlierMap:
    """Outlier channels of `model`'s base projections now, by `like`'s strategy and thresholds.

    batches: dicts with input_ids int64 [B, T] and optionally attention_mask [B, T] (0 = ignore).
    """
    return calibrate(
        model,
        batches,
        strategy=like.strategy,
        threshold=like.threshold,
        max_ratio=like.max_ratio,
        model_id=like.model_id,
    )


def outlier_recall(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], initial: OutlierMap
) -> Overlap:
    """Recall of `initial`'s channels among the outliers `model` shows on `batches` now."""
    return initial.overlap(measure_outliers(model, batches, initial))


@dataclass
class StabilityProbe:
    """Keeps the latest training batch; `measure(step)` re-measures the model on it."""

    model: nn.Module
    initial: OutlierMap
    batch: dict[str, torch.Tensor] | None = None
    points: list[dict[str, float]] = field(default_factory=list)

    def remember(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """The batch of the step being trained (input_ids, attention_mask)."""
        self.batch = {
            key: inputs[key].detach()
            for key in ("input_ids", "attention_mask")
            if isinstance(inputs.get(key), torch.Tensor)
        }

    def measure(self, step: int) -> float | None:
        """Overall recall of the initial map on the latest batch (None before any batch)."""
        if not self.batch or not self.initial.num_channels:
            return None
        recall = outlier_recall(self.model, [self.batch], self.initial).overall
        self.points.append({"step": step, "recall": recall})
        logger.info("step %d: outlier recall %.3f", step, recall)
        return recall


def report_stability(probe: StabilityProbe, step: int, callbacks: TrainCallbacks) -> None:
    """Measure the initial map's recall at a checkpoint and report it as an event."""
    recall = probe.measure(step)
    if recall is None:
        return
    callbacks.on_event(
        TrainEvent(
            EventKind.OUTLIER_STABILITY,
            f"Outlier stability at step {step}: {recall:.1%} of the initial outlier channels "
            "are still outliers",
            {"step": step, "recall": recall},
        )
    )


def skipped_updates(model: nn.Module) -> int:
    """Training forwards whose outlier statistic was non-finite or zero, summed over layers."""
    return sum(int(layer.outlier_scale_skipped) for layer in quaff_layers(model).values())


def report_skipped_updates(model: nn.Module, callbacks: TrainCallbacks) -> int:
    """Say (one event) how many outlier-scale updates were left out; returns the count."""
    count = skipped_updates(model)
    if count:
        callbacks.on_event(
            TrainEvent(
                EventKind.SCALE_UPDATES_SKIPPED,
                f"{count} outlier-scale updates were skipped: a batch gave a non-finite or zero "
                "statistic (the scales kept their last good values)",
                {"count": count},
                level="warn",
            )
        )
    return count
