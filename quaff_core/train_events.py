"""Typed training events: what `train` tells its caller, by kind (never by wording)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class EventKind(StrEnum):
    """Kinds of phase events; callers filter and react by kind, the message is for people."""

    MODEL_LOADING = "model_loading"
    EXAMPLES_TRUNCATED = "examples_truncated"
    EXAMPLES_DROPPED = "examples_dropped"
    CALIBRATING = "calibrating"
    OUTLIER_MAP_REUSED = "outlier_map_reused"
    QUANTIZED = "quantized"
    CHECKPOINT_SAVED = "checkpoint_saved"
    MODEL_SAVED = "model_saved"
    RUNTIME = "runtime"
    WARMUP = "warmup"
    COMPILE_FALLBACK = "compile_fallback"
    SCALE_UPDATES_SKIPPED = "scale_updates_skipped"
    OUTLIER_STABILITY = "outlier_stability"


@dataclass(frozen=True)
class TrainEvent:
    """One phase event: its kind, a message for people and the facts behind it."""

    kind: EventKind
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    level: Literal["info", "warn"] = "info"
