"""Phase events of work done outside `train` (calibration) written to the job's events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from quaff_core.train_events import TrainEvent
from quaff_core.training.callbacks import NullCallbacks
from store.events import add_event
from store.models import Job


class JobEventSink(NullCallbacks):
    """Training callbacks that store each phase event on the job and ignore the rest."""

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
