"""Outlier maps for a job: the one it names, a stored match, or a new calibration, stored."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from quaff_core.callbacks import NullCallbacks
from quaff_core.config import TrainConfig
from quaff_core.outliers import OutlierMap
from store import outlier_maps
from store.blobs import BlobStore
from store.events import add_event
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
    """Sends calibration's phase messages to the job's events."""

    def __init__(self, session: Session, job: Job) -> None:
        self.session, self.job = session, job

    def on_event(self, message: str) -> None:
        """Store one message event."""
        add_event(self.session, self.job.id, message)
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
    """Calibrate on the first `calibration_examples` tokenized training examples."""
    from quaff_core.data import read_examples
    from quaff_core.prepare import calibrate_on
    from quaff_core.tokenize import PadCollator, tokenize_examples

    examples = read_examples(path, name=f"training file {train_file.id}")
    dataset = tokenize_examples(
        examples[: config.calibration_examples],
        tok,
        max_seq_length=config.max_seq_length,
        train_on_inputs=config.train_on_inputs,
    )
    if not len(dataset):
        raise JobFailure(
            "invalid_training_data",
            f"No example of {train_file.id} has a trainable token within max_seq_length="
            f"{config.max_seq_length}; raise training.max_seq_length.",
            "training.max_seq_length",
        )
    collator = PadCollator(pad_token_id=int(tok.pad_token_id))
    return calibrate_on(
        model, dataset, collator, config, model_id=job.model, callbacks=_EventSink(session, job)
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
    options = calibration_options(job, config)
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
    )
    session.commit()
    return fresh
