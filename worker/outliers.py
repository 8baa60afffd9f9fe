"""Outlier maps for a job: the one it names, a stored match, or a new calibration, stored."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import NullCallbacks
from store import outlier_maps
from store.blobs import BlobStore
from store.events import ServiceEvent, add_event
from store.models import File, Job
from store.models import OutlierMap as OutlierMapRow
from worker.options import JobFailure, calibration_options

logger = logging.getLogger(__name__)


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


class _EventSink(NullCallbacks):
    """Sends calibration's phase events to the job's events."""

    def __init__(self, session: Session, job: Job) -> None:
        self.session, self.job = session, job

    def on_event(self, event: TrainEvent) -> None:
        """Store one message event with its kind."""
        add_event(
            self.session,
            self.job.id,
            event.message,
            kind=event.kind,
            level=event.level,
            data=dict(event.data) or None,
        )
        self.session.commit()


def _calibrate(
    session: Session,
    job: Job,
    config: TrainConfig,
    train_file: File,
    path: Any,
    model: Any,
    tok: Any,
) -> OutlierMap:
    """Calibrate on the calibration set of the training file, tokenised as training does."""
    from quaff_core.data.jsonl import read_examples
    from quaff_core.errors import NothingToTrainError, UnsupportedExamplesError
    from quaff_core.training.prepare import calibrate_on, tokenize_dataset

    examples = read_examples(path, name=f"training file {train_file.id}")
    try:
        dataset = tokenize_dataset(
            examples, tok, config, name="training", callbacks=NullCallbacks()
        )
    except UnsupportedExamplesError as exc:
        raise JobFailure("invalid_training_data", str(exc), "training_file") from exc
    except NothingToTrainError as exc:
        raise JobFailure(
            "invalid_training_data",
            f"No example of {train_file.id} has a trainable token within max_seq_length="
            f"{config.max_seq_length}; raise training.max_seq_length.",
            "training.max_seq_length",
        ) from exc
    return calibrate_on(
        model,
        dataset,
        config,
        pad_token_id=int(tok.pad_token_id),
        model_id=job.model,
        callbacks=_EventSink(session, job),
    )


def resolve_outlier_map(
    session: Session,
    blobs: BlobStore,
    job: Job,
    config: TrainConfig,
    train_file: File,
    *,
    model: Any,
    tokenizer: Any,
    resuming: bool,
) -> OutlierMap | None:
    """The job's map: named or earlier-attempt (`job.outlier_map_id`), a stored match, or new."""
    if config.quantization != "quaff":
        return None
    options = calibration_options(config)
    row = session.get(OutlierMapRow, job.outlier_map_id) if job.outlier_map_id else None
    if row is None:
        row = outlier_maps.find_reusable(
            session,
            job.project_id,
            base_model=job.model,
            dataset_sha256=train_file.sha256,
            options=options,
        )
    if row is not None:
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
    fresh = _calibrate(
        session, job, config, train_file, blobs.path(train_file.blob_key), model, tokenizer
    )
    row = outlier_maps.create_outlier_map(
        session,
        blobs,
        job.project_id,
        base_model=job.model,
        dataset_sha256=train_file.sha256,
        options=options,
        payload=fresh.to_dict(),
        dataset_file_id=train_file.id,
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
    return fresh
