"""Train one job over several devices of this host: its ranks run under PyTorch's launcher
(`torch.distributed.run`, env:// rendezvous), this worker process keeps the lease.

The worker relays rank 0's reports into the store and answers its control questions (pause,
cancel, hand-back, safety checkpoints) through `worker.relay`. A rank that dies ends the group
(torchrun stops the others); the worker relaunches it from the last stored checkpoint, at most
`rank_restarts` times.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session

from store.blobs import BlobStore
from store.checkpoints import latest_checkpoint
from store.events import ServiceEvent, add_event, discard_metrics_after
from store.models import File, Job
from store.settings import Settings
from worker.options import JobFailure, train_config
from worker.ranks import RankSpec, read_result
from worker.relay import RelayReader
from worker.reporting import StoreCallbacks
from worker.results import resume_dir

logger = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class RankFailure(Exception):
    """The process group ended with a non-zero exit status (a rank died or failed)."""

    def __init__(self, returncode: int, log_tail: str) -> None:
        super().__init__(f"the training processes exited with status {returncode}")
        self.returncode, self.log_tail = returncode, log_tail


def check_devices(settings: Settings, devices: int) -> None:
    """A job on `devices` devices needs that many in the worker's QUAFF_DEVICES."""
    available = max(1, len(settings.device_slots))
    if devices > available:
        raise JobFailure(
            "device_unavailable",
            f"training.devices={devices} but this worker trains on {available} device(s) "
            f"(QUAFF_DEVICES={settings.devices or 'unset'}); lower training.devices or give the "
            "worker more devices.",
            "training.devices",
        )


def rank_spec(
    job: Job,
    *,
    blobs: BlobStore,
    train_file: File,
    valid_file: File | None,
    outlier_map: Any,
    resume: Path | None,
    work: Path,
) -> RankSpec:
    """What the ranks of a multi-device job run: the map resolved here, shared as a file."""
    config = train_config(job)
    map_path = None
    if outlier_map is not None:
        map_path = work / "outlier_map.json"
        outlier_map.save(map_path)
    return RankSpec(
        model=job.model,
        train_file=str(blobs.path(train_file.blob_key)),
        validation_file=str(blobs.path(valid_file.blob_key)) if valid_file else None,
        output_dir=str(work / "run"),
        config=config.to_dict(),
        outlier_map=str(map_path) if map_path else None,
        resume_from=str(resume) if resume else None,
        relay_dir=str(work / "relay"),
        parent_pid=os.getpid(),
        threads=max(1, torch.get_num_threads() // config.devices),
    )


def launch_command(spec_path: Path, n_ranks: int) -> list[str]:
    """torchrun on this host: `n_ranks` processes, no elastic restarts (the worker decides)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={n_ranks}", "--max-restarts=0", "-m", "worker.ranks", str(spec_path),
    ]  # fmt: skip


def run_group(spec: RankSpec, n_ranks: int, callbacks: StoreCallbacks, work: Path) -> Any:
    """Launch the ranks and relay until they exit; rank 0's `TrainResult`, else RankFailure."""
    relay = Path(spec.relay_dir)
    relay.mkdir(parents=True, exist_ok=True)
    for stale in relay.iterdir():
        stale.unlink()
    log_path = work / "ranks.log"
    reader = RelayReader(relay, callbacks)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            launch_command(spec.write(work / "rank_spec.json"), n_ranks),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": str(spec.threads)},
        )
        try:
            while process.poll() is None:
                _relay_once(reader, callbacks)
                time.sleep(POLL_SECONDS)
        finally:
            if process.poll() is None:  # the worker itself failed: end the group with it
                process.kill()
            process.wait()
    reader.pump()
    if process.returncode != 0:
        raise RankFailure(process.returncode, _log_tail(log_path))
    return read_result(Path(spec.output_dir))


def _log_tail(log_path: Path, n_lines: int = 40) -> str:
    """The ranks' own last lines (`[rankN]:` tracebacks), else the launcher's."""
    lines = log_path.read_text(errors="replace").splitlines()
    ranks = [line for line in lines if line.startswith("[rank")]
    return "\n".join((ranks or lines)[-n_lines:])


def _relay_once(reader: RelayReader, callbacks: StoreCallbacks) -> None:
    """Replay rank 0's new lines, then publish the answer to `control()`."""
    reader.pump()
    decision = callbacks.control()
    reader.answer(decision)
    if decision == "checkpoint":  # asked once: the next one is due a full interval later
        callbacks.last_checkpoint_time = time.monotonic()


def train_group(
    session: Session,
    blobs: BlobStore,
    job: Job,
    settings: Settings,
    *,
    spec: RankSpec,
    callbacks: StoreCallbacks,
    work: Path,
) -> Any:
    """`run_group`, relaunched from the last stored checkpoint after a rank dies."""

    n_ranks = int(spec.config["devices"])
    failures = 0
    while True:
        try:
            return run_group(spec, n_ranks, callbacks, work)
        except RankFailure as failure:
            logger.warning("job %s: %s\n%s", job.id, failure, failure.log_tail)
            failures += 1
            _check_relaunch(failure, failures, settings, callbacks)
        resume = _resume_point(session, blobs, job, work / f"resume-{failures}")
        spec = replace(spec, resume_from=str(resume) if resume else None)


def _check_relaunch(
    failure: RankFailure, failures: int, settings: Settings, callbacks: StoreCallbacks
) -> None:
    """JobFailure unless the group may run again: the job still runs and restarts are left."""
    if callbacks.control() not in ("continue", "checkpoint"):
        raise JobFailure(
            "internal_error",
            f"A training process of the job exited ({failure}) while it was stopping; resume "
            "the job to continue from its last checkpoint.",
        ) from failure
    if failures > settings.rank_restarts:
        raise JobFailure(
            "internal_error",
            f"A training process of the job died {failures} times ({failure}); see the worker "
            "log, then retry the job.",
        ) from failure


def _resume_point(session: Session, blobs: BlobStore, job: Job, target: Path) -> Path | None:
    """The last stored checkpoint unpacked into `target` (metrics after it discarded), said in
    an event; None when there is none yet (the group starts over)."""
    checkpoint = latest_checkpoint(session, job.id)
    step = checkpoint.step_number if checkpoint is not None else 0
    where = f"checkpoint at step {step} ({checkpoint.id})" if checkpoint else "the start"
    add_event(
        session,
        job.id,
        f"A training process died; resuming from {where}",
        level="warn",
        kind=ServiceEvent.RESUMING,
        data={"step": step, "checkpoint": checkpoint.id if checkpoint else None},
    )
    session.commit()
    if checkpoint is None:
        return None
    discard_metrics_after(session, job.id, step)
    return resume_dir(blobs, checkpoint, target)
