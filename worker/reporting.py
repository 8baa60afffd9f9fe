"""Training callbacks that write events, progress and checkpoints to the store as training goes."""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import Control, ProgressEvent
from store import jobs
from store.blobs import BlobStore
from store.checkpoints import save_checkpoint
from store.events import ServiceEvent, add_event
from store.models import Checkpoint, Job
from worker.artifacts import pack_dir
from worker.lease import STOPPING

logger = logging.getLogger(__name__)

# Events of `train` that the worker reports itself, with store facts (ids, stored checkpoints).
_REPLACED = frozenset({EventKind.CHECKPOINT_SAVED, EventKind.MODEL_SAVED})


def _json_number(value: Any) -> Any:
    """Floats that JSON can carry (NaN/inf become None); other values unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class StoreCallbacks:
    """The training callbacks backed by the job's rows and the blob store."""

    def __init__(
        self,
        session: Session,
        blobs: BlobStore,
        job: Job,
        *,
        lease_lost: threading.Event,
        extra_files: Path | None = None,
        safety_checkpoint_seconds: float | None = None,
        save_every: Callable[[int], int] | None = None,
    ) -> None:
        self.session, self.blobs, self.job = session, blobs, job
        self.lease_lost = lease_lost
        self.extra_files = extra_files
        self.safety_checkpoint_seconds = safety_checkpoint_seconds
        self.last_checkpoint_time = time.monotonic()
        self.last_step = 0
        self.total_steps = 0
        self.save_every = save_every
        self.handing_back = False

    def on_event(self, event: TrainEvent) -> None:
        """A phase event from training, stored as a message event of the same kind."""
        if event.kind in _REPLACED:
            logger.debug("job %s: %s", self.job.id, event.message)
            return
        if event.kind == EventKind.RUNTIME:
            self.job.runtime = dict(event.data)
        if event.kind == EventKind.OUTLIER_STABILITY:
            step = int(event.data["step"])
            kept = [p for p in self.job.outlier_stability or [] if p["step"] != step]
            self.job.outlier_stability = [*kept, {"step": step, "recall": event.data["recall"]}]
        data = {k: _json_number(v) for k, v in event.data.items()} or None
        add_event(
            self.session, self.job.id, event.message, level=event.level, kind=event.kind, data=data
        )
        self.session.commit()

    def on_progress(self, event: ProgressEvent) -> None:
        """A metrics event plus `progress`, `trained_tokens` and `estimated_finish` on the job."""
        data = {k: _json_number(v) for k, v in event.metrics().items()}
        stored = jobs.record_progress(
            self.session,
            self.job,
            step=event.step,
            total_steps=event.total_steps,
            epoch=event.epoch,
            trained_tokens=event.trained_tokens or None,
            estimated_finish=event.estimated_finish,
        )
        if not stored:  # cancelled meanwhile: the step that was under way does not count
            self.session.rollback()
            return
        add_event(
            self.session,
            self.job.id,
            event.message(),
            type="metrics",
            kind=ServiceEvent.METRICS,
            data=data,
        )
        self.session.commit()
        self.last_step, self.total_steps = event.step, event.total_steps

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        """Archive the checkpoint directory (plus tokenizer files) into the store, then say so."""
        exists = self.session.scalar(
            select(Checkpoint.id).where(
                Checkpoint.job_id == self.job.id, Checkpoint.step_number == step
            )
        )
        if exists is not None:
            logger.info("job %s already has a checkpoint at step %d", self.job.id, step)
            return
        if self.extra_files is not None:
            for extra in self.extra_files.iterdir():
                target = path / extra.name
                if extra.is_file() and not target.exists():
                    target.write_bytes(extra.read_bytes())
        clean = {k: _json_number(v) for k, v in metrics.items() if k != "step"}
        with tempfile.TemporaryDirectory(prefix="quaff-ckpt-") as tmp:
            archive = pack_dir(path, Path(tmp) / "checkpoint.tar.gz")
            save_checkpoint(
                self.session, self.blobs, self.job, step=step, metrics=clean, source=archive,
                safety=not self.requested(step),
            )  # fmt: skip
        add_event(
            self.session,
            self.job.id,
            f"Checkpoint saved at step {step}",
            kind=EventKind.CHECKPOINT_SAVED,
            data={"step": step},
        )
        self.session.commit()
        self.last_checkpoint_time = time.monotonic()

    def requested(self, step: int) -> bool:
        """Whether the job asked for a checkpoint at `step` (its schedule, or the last step);
        the others are the worker's own safety checkpoints (timed, pause, hand-back)."""
        if self.save_every is None or not self.total_steps or step >= self.total_steps:
            return True
        every = self.save_every(self.total_steps)
        return bool(every) and step % every == 0

    def control(self) -> Control:
        """Between steps: stop when the job is cancelled, paused or taken over, or on shutdown."""
        if self.lease_lost.is_set():
            logger.warning("job %s: lease lost; stopping", self.job.id)
            return "cancel"
        status = jobs.current_status(self.session, self.job)
        if status == "paused":
            return "pause"
        if status != "running":
            return "cancel"
        if STOPPING.is_set():
            self.handing_back = True
            return "pause"
        if self._safety_checkpoint_due():
            return "checkpoint"
        return "continue"

    def _safety_checkpoint_due(self) -> bool:
        """Whether the last checkpoint (or the start) is older than the safety interval."""
        if self.safety_checkpoint_seconds is None:
            return False
        return time.monotonic() - self.last_checkpoint_time >= self.safety_checkpoint_seconds
