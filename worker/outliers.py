"""Outlier maps for a job: the one it names, a stored map that fits, or a new calibration.

By default (`quantization.calibration_data: base`) a base model has one map, calibrated on the
general chat set the first time a job needs it and reused by every later job on that base,
whatever its data; `job` calibrates on (and reuses only for) the job's own training file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from quaff_core.calibration.base_set import base_calibration_sha256
from quaff_core.lm.tokenization import TokenizedDataset
from quaff_core.options.spec import option
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.train_events import EventKind
from quaff_core.training.prepare import (
    base_calibration_config,
    calibrate_on,
    general_calibration_set,
)
from store import outlier_maps
from store.blobs import BlobStore
from store.events import ServiceEvent, add_event
from store.models import File, Job
from store.models import OutlierMap as OutlierMapRow
from worker.job_events import JobEventSink
from worker.options import JobFailure, calibration_options

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapSource:
    """What a new map is calibrated on: the data's checksum, file row and reuse options."""

    sha256: str
    file_id: str | None
    options: dict[str, Any]


def calibration_data(job: Job) -> str:
    """The job's `quantization.calibration_data` (older rows: the option's default)."""
    return str(job.quantization.get("calibration_data", option("calibration_data").default))


def map_source(job: Job, config: TrainConfig, train_file: File) -> MapSource:
    """The job's own training file, or the base's general chat set."""
    if calibration_data(job) == "job":
        return MapSource(train_file.sha256, train_file.id, calibration_options(config))
    base = calibration_options(base_calibration_config(config))
    return MapSource(base_calibration_sha256(), None, {**base, "calibration_data": "base"})


def _load(blobs: BlobStore, row: OutlierMapRow) -> OutlierMap:
    """The stored map as a quaff_core OutlierMap."""
    try:
        return OutlierMap.from_dict(outlier_maps.load_payload(blobs, row))
    except (OSError, ValueError, KeyError) as exc:
        raise JobFailure(
            "invalid_outlier_map",
            f"Outlier map {row.id} cannot be read ({exc}); create the job without it to calibrate "
            "again.",
            "quantization.outlier_map",
        ) from exc


def _calibration_set(
    job: Job, config: TrainConfig, tokenizer: Any, dataset: Callable[[], TokenizedDataset]
) -> tuple[TrainConfig, TokenizedDataset]:
    """The config and tokenised set to calibrate on: the job's, or the general chat set."""
    if calibration_data(job) == "job":
        return config, dataset()
    return general_calibration_set(config, tokenizer)


def _reuse(
    session: Session, blobs: BlobStore, job: Job, row: OutlierMapRow, resuming: bool
) -> OutlierMap:
    """Use a stored map for the job (said in an event, unless the job resumes with it)."""
    job.outlier_map_id = row.id
    if not resuming:
        add_event(
            session,
            job.id,
            f"Reusing outlier map {row.id} ({row.n_outlier_channels} outlier channels in "
            f"{row.n_layers} layers)",
            kind=EventKind.OUTLIER_MAP_REUSED,
            data={"outlier_map": row.id},
        )
    session.commit()
    return _load(blobs, row)


def _store(
    session: Session, blobs: BlobStore, job: Job, source: MapSource, fresh: OutlierMap
) -> None:
    """Keep a new map for reuse (said in an event) and name it on the job."""
    row = outlier_maps.create_outlier_map(
        session,
        blobs,
        job.project_id,
        base_model=job.model,
        dataset_sha256=source.sha256,
        options=source.options,
        payload=fresh.to_dict(),
        dataset_file_id=source.file_id,
    )
    job.outlier_map_id = row.id
    add_event(
        session,
        job.id,
        f"Stored outlier map {row.id} ({row.n_outlier_channels} outlier channels in "
        f"{row.n_layers} layers) for reuse",
        kind=ServiceEvent.OUTLIER_MAP_STORED,
        data={"outlier_map": row.id},
    )
    session.commit()


def resolve_outlier_map(
    session: Session,
    blobs: BlobStore,
    job: Job,
    config: TrainConfig,
    train_file: File,
    *,
    model: Callable[[], Any],
    tokenizer: Any,
    dataset: Callable[[], TokenizedDataset],
    resuming: bool,
) -> OutlierMap | None:
    """The job's map: named or earlier-attempt (`job.outlier_map_id`), a stored one that fits,
    or new: calibrated on `model()` (unconverted) with the job's `dataset()` or the chat set."""
    if config.quantization != "quaff":
        return None
    source = map_source(job, config, train_file)
    row = session.get(OutlierMapRow, job.outlier_map_id) if job.outlier_map_id else None
    if row is None:
        row = outlier_maps.find_reusable(
            session,
            job.project_id,
            base_model=job.model,
            dataset_sha256=source.sha256,
            options=source.options,
        )
    if row is not None:
        return _reuse(session, blobs, job, row, resuming)
    calibration, data = _calibration_set(job, config, tokenizer, dataset)
    fresh = calibrate_on(
        model(),
        data,
        calibration,
        pad_token_id=int(tokenizer.pad_token_id),
        model_id=job.model,
        callbacks=JobEventSink(session, job),
    )
    _store(session, blobs, job, source, fresh)
    return fresh
