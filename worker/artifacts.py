"""Artifacts the worker stores: directory archives (`.tar.gz`) and the metrics CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from store.archives import pack_dir, unpack

__all__ = ["METRICS_COLUMNS", "metrics_csv", "pack_dir", "unpack"]

METRICS_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "learning_rate",
)
# a DPO job's reward metrics (quaff_core.training.callbacks.preference_metrics), when present
PREFERENCE_COLUMNS = tuple(
    f"{split}_{name}"
    for split in ("train", "valid")
    for name in ("rewards_chosen", "rewards_rejected", "rewards_margin", "rewards_accuracy")
)


def metrics_csv(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """One CSV line per logged step (train and eval rows of a step are merged), oldest first."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        merged = by_step.setdefault(int(row["step"]), {})
        merged.update({k: v for k, v in row.items() if v is not None})
    present = {key for row in by_step.values() for key in row}
    columns = METRICS_COLUMNS + tuple(c for c in PREFERENCE_COLUMNS if c in present)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for step in sorted(by_step):
        writer.writerow({column: by_step[step].get(column, "") for column in columns})
    return out.getvalue().encode("utf-8")
