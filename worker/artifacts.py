"""Artifacts the worker stores: directory archives (`.tar.gz`) and the metrics CSV."""

from __future__ import annotations

import csv
import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

METRICS_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "learning_rate",
)


def pack_dir(source: Path, target: Path) -> Path:
    """Write every file under `source` into the tarball `target`, paths relative to `source`."""
    if not source.is_dir():
        raise FileNotFoundError(f"cannot archive {source}: not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return target


def unpack(archive: Path, target: Path) -> Path:
    """Extract a tarball written by `pack_dir` into `target` (regular files only, no escapes)."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")
    return target


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
