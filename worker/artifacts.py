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


def metrics_csv(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """One CSV line per logged step (train and eval rows of a step are merged), oldest first."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        merged = by_step.setdefault(int(row["step"]), {})
        merged.update({k: v for k, v in row.items() if v is not None})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for step in sorted(by_step):
        writer.writerow({column: by_step[step].get(column, "") for column in METRICS_COLUMNS})
    return out.getvalue().encode("utf-8")
