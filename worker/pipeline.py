"""Run one fine-tuning job: claim, validate, load, calibrate or reuse, train, persist results."""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session

from quaff_core.train_events import EventKind
from store import jobs
from store.blobs import BlobStore
from store.checkpoints import latest_checkpoint
from store.db import session_factory, session_scope
from store.device_lock import DeviceTurnstile, lock_dir, lock_name
from store.errors import InvalidRequestError
from store.events import ServiceEvent, add_event, discard_metrics_after
from store.grading import grading_context
from store.models import File, Job
from store.settings import Settings
from worker.device_share import DeviceSharing
from worker.lease import Heartbeat, acquire, hand_back
from worker.options import JobFailure, train_config

logger = logging.getLogger(__name__)

Outcome = Literal["skipped", "succeeded", "failed", "cancelled", "paused", "requeued"]
Requeue = Callable[[str], object]


def run_job(
    job_id: str, settings: Settings, worker_id: str, requeue: Requeue | None = None
) -> Outcome:
    """Run a queued or abandoned job (`requeue` re-publishes one handed back); else leave it."""
    blobs = BlobStore(settings.blob_dir)
    with session_scope(settings) as session:
        job = acquire(session, job_id, worker_id, settings)
        if job is None:
            return "skipped"
        heartbeat = Heartbeat(settings, job_id, worker_id)
        heartbeat.start()
        try:
            return _run_claimed(session, blobs, settings, job, worker_id, heartbeat.lost, requeue)
        except JobFailure as failure:
            return _fail(session, job, failure.code, failure.message, failure.param)
        except MemoryError as exc:
            return _fail(session, job, *out_of_memory_error(job, "cpu", exc))
        except Exception as exc:  # the job must end `failed`, whatever broke
            logger.exception("job %s crashed", job_id)
            return _fail(session, job, "internal_error", _internal_message(exc))
        finally:
            heartbeat.stop()
            _release_memory()


def _internal_message(exc: BaseException) -> str:
    return f"Internal error while training ({type(exc).__name__}: {exc}); please retry the job."


def out_of_memory_error(job: Job, device: str, exc: BaseException) -> tuple[str, str, str]:
    """The actionable out-of-memory error, naming the batch size that caused it."""
    batch = job.hyperparameters.get("batch_size")
    length = job.training.get("max_seq_length")
    logger.warning("job %s ran out of memory: %s", job.id, exc)
    return (
        "out_of_memory",
        f"Out of {device} memory with batch_size={batch} and max_seq_length={length}. Lower "
        "hyperparameters.batch_size (raise training.gradient_accumulation_steps to keep the "
        "effective batch) or training.max_seq_length, then create the job again.",
        "hyperparameters.batch_size",
    )


def _fail(session: Session, job: Job, code: str, message: str, param: str | None = None) -> Outcome:
    """Mark the job failed, unless it was cancelled or taken over meanwhile; stored rows stay."""
    session.rollback()
    try:
        jobs.fail_job(session, job, code, message, param)
    except InvalidRequestError:
        session.rollback()
        logger.info("job %s is %s; not marking it failed (%s)", job.id, job.status, message)
        return "cancelled" if job.status == "cancelled" else "skipped"
    logger.info("job %s failed: %s %s", job.id, code, message)
    return "failed"


def _release_memory() -> None:
    """Free the model between jobs (the pool process lives on)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def resolve_device(settings: Settings) -> str:
    """`cuda` when configured or detected, else `cpu` (the process sees only the chosen GPU)."""
    import torch

    if settings.device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if settings.device != "auto":
        raise JobFailure(
            "device_unavailable",
            f"QUAFF_DEVICE={settings.device} but this worker sees no CUDA device; fix the worker's "
            "device setting or its GPU reservation.",
        )
    return "cpu"


def device_turnstile(settings: Settings) -> DeviceTurnstile | None:
    """The device turnstile shared with inference nodes on this host (None: not sharing)."""
    import torch

    if not settings.infer_yield_to_training:
        return None
    name = lock_name(settings.device, torch.cuda.is_available())
    return DeviceTurnstile(lock_dir(settings.data_dir), name)


def _dataset(session: Session, blobs: BlobStore, job: Job, file_id: str, param: str) -> File:
    """Re-validate a job's dataset from its blob; JobFailure naming the file and the line."""
    from quaff_core.data.jsonl import validate_jsonl

    row = session.get(File, file_id)
    if row is None or not blobs.exists(row.blob_key):
        raise JobFailure("invalid_file", f"File {file_id} no longer exists.", param)
    report = validate_jsonl(blobs.path(row.blob_key))
    if not report.ok:
        raise JobFailure("invalid_file", f"File {file_id}: {report.summary()}", param)
    if param == "training_file" and report.n_examples < jobs.MIN_TRAINING_EXAMPLES:
        raise JobFailure(
            "invalid_n_examples",
            f"Training file {file_id} has {report.n_examples} example(s); a job needs at least "
            f"{jobs.MIN_TRAINING_EXAMPLES}.",
            param,
        )
    return row


def _run_claimed(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    job: Job,
    worker_id: str,
    lease_lost: threading.Event,
    requeue: Requeue | None,
) -> Outcome:
    """Everything after the claim; JobFailure for problems the user can fix."""
    import torch

    from quaff_core.errors import (
        NothingToTrainError,
        StartAdapterError,
        UnsupportedExamplesError,
    )
    from quaff_core.models.loading import ModelLoadError, load_base_model
    from quaff_core.training.rft import GraderReward
    from quaff_core.training.train import train
    from worker.group import check_devices, rank_spec, train_group
    from worker.outliers import resolve_outlier_map
    from worker.reporting import StoreCallbacks
    from worker.results import resume_dir

    add_event(
        session,
        job.id,
        f"Fine-tuning job started (attempt {job.attempts})",
        kind=ServiceEvent.JOB_STARTED,
        data={"attempt": job.attempts},
    )
    session.commit()
    train_file = _dataset(session, blobs, job, job.training_file_id, "training_file")
    valid_file = (
        _dataset(session, blobs, job, job.validation_file_id, "validation_file")
        if job.validation_file_id
        else None
    )
    config = train_config(job)
    check_devices(settings, config.devices)
    device = resolve_device(settings)
    add_event(
        session,
        job.id,
        f"Loading base model {job.model} on {device}",
        kind=EventKind.MODEL_LOADING,
        data={"model": job.model, "device": device},
    )
    session.commit()
    try:
        model, tokenizer = load_base_model(job.model, device=device)
    except ModelLoadError as exc:
        raise JobFailure("model_not_available", f"Cannot load {job.model}: {exc}", "model") from exc
    check_target_modules(model, config.lora_target_modules, job.model)
    with tempfile.TemporaryDirectory(prefix=f"quaff-{job.id}-") as tmp:
        work = Path(tmp)
        tokenizer_files = work / "tokenizer"
        tokenizer.save_pretrained(str(tokenizer_files))
        checkpoint = latest_checkpoint(session, job.id)
        resume = resume_dir(blobs, checkpoint, work / "resume") if checkpoint else None
        if checkpoint is not None:
            discard_metrics_after(session, job.id, checkpoint.step_number)
            add_event(
                session,
                job.id,
                f"Resuming from checkpoint at step {checkpoint.step_number} ({checkpoint.id})",
                kind=ServiceEvent.RESUMING,
                data={"step": checkpoint.step_number, "checkpoint": checkpoint.id},
            )
            session.commit()
        start = start_dir(session, blobs, job, work / "start")
        outlier_map = resolve_outlier_map(
            session,
            blobs,
            job,
            config,
            train_file,
            model=model,
            tokenizer=tokenizer,
            resuming=resume is not None,
        )
        callbacks = StoreCallbacks(
            session,
            blobs,
            job,
            lease_lost=lease_lost,
            extra_files=tokenizer_files,
            safety_checkpoint_seconds=settings.safety_checkpoint_seconds,
            save_every=config.save_every,
        )
        if config.devices > 1:
            del model  # each rank loads its own copy
            _release_memory()
            spec = rank_spec(
                job,
                blobs=blobs,
                train_file=train_file,
                valid_file=valid_file,
                outlier_map=outlier_map,
                resume=resume,
                work=work,
            )
            result = train_group(
                session, blobs, job, settings, spec=spec, callbacks=callbacks, work=work
            )
            return _after_training(session, blobs, job, worker_id, result, callbacks, requeue)
        turnstile = device_turnstile(settings)
        try:
            if turnstile is not None:
                turnstile.acquire()
            result = train(
                (model, tokenizer),
                blobs.path(train_file.blob_key),
                work / "run",
                config=config,
                validation_data=blobs.path(valid_file.blob_key) if valid_file else None,
                outlier_map=outlier_map,
                callbacks=DeviceSharing(callbacks, turnstile) if turnstile else callbacks,
                resume_from=resume,
                base_model_id=job.model,
                start_from=start,
                reward=_reward(GraderReward, settings, job),
            )
        except UnsupportedExamplesError as exc:
            param = "validation_file" if exc.dataset == "validation" else "training_file"
            raise JobFailure("invalid_training_data", str(exc), param) from exc
        except StartAdapterError as exc:
            raise JobFailure("invalid_model", str(exc), "model") from exc
        except NothingToTrainError as exc:
            message = f"Nothing to train on: {exc}"
            raise JobFailure("invalid_training_data", message, "training.max_seq_length") from exc
        except torch.OutOfMemoryError as exc:
            raise JobFailure(*out_of_memory_error(job, device, exc)) from exc
        finally:
            if turnstile is not None:
                turnstile.release()
        del model
        return _after_training(session, blobs, job, worker_id, result, callbacks, requeue)


def _reward(reward_class: Any, settings: Settings, job: Job) -> Any:
    """A reinforcement job's reward: its grader, judged by the project's models (else None)."""
    if job.method != "reinforcement" or job.grader is None:
        return None
    context = grading_context(session_factory(settings), settings, job.project_id)
    return reward_class(job.grader, context)


def _after_training(
    session: Session,
    blobs: BlobStore,
    job: Job,
    worker_id: str,
    result: Any,
    callbacks: Any,
    requeue: Requeue | None,
) -> Outcome:
    """Hand a stopping worker's job back, or finish it (store results, or leave it paused)."""
    from worker.results import store_results

    if result.stopped == "paused" and callbacks.handing_back:
        return _hand_back(session, job, worker_id, result.final_step, requeue)
    return _finish(session, blobs, job, result, store_results)


def start_dir(session: Session, blobs: BlobStore, job: Job, target: Path) -> Path | None:
    """The adapter a continued job starts from, unpacked into `target` (None: a fresh start)."""
    from store.model_refs import tuned_model
    from worker.artifacts import unpack

    if not job.continued_from:
        return None
    ref = tuned_model(session, job.project_id, job.continued_from)
    if ref is None or ref.blob_key is None or not blobs.exists(ref.blob_key):
        raise JobFailure(
            "model_not_found",
            f"The model {job.continued_from} this job continues from no longer exists.",
            "model",
        )
    return unpack(blobs.path(ref.blob_key), target)


def check_target_modules(model: Any, targets: Any, model_id: str) -> None:
    """LoRA targets must name linear layers of the loaded model (catalog models are checked at
    create; a local model only here); JobFailure naming `lora.target_modules` otherwise."""
    from torch import nn

    if not isinstance(targets, list | tuple):
        return
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    unknown = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if unknown:
        leaves = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in names}))
        raise JobFailure(
            "invalid_hyperparameters",
            f"lora.target_modules {unknown[0]!r} names no linear layer of {model_id} (its layers "
            f"end in: {leaves}); use those names or 'all-linear'.",
            "lora.target_modules",
        )


def _hand_back(
    session: Session, job: Job, worker_id: str, step: int, requeue: Requeue | None
) -> Outcome:
    """The worker is stopping: the job (checkpointed at `step`) goes back to the queue."""
    if not hand_back(session, job, worker_id, step):
        return _finish_stopped(session, job, step)
    if requeue is not None:
        requeue(job.id)
    logger.info("job %s handed back at step %d", job.id, step)
    return "requeued"


def _finish_stopped(session: Session, job: Job, step: int) -> Outcome:
    """The job left `running` meanwhile (paused or cancelled by the user): leave it so."""
    status = jobs.current_status(session, job)
    logger.info("job %s stopped at step %d (%s)", job.id, step, status)
    if status != "paused":
        return "cancelled"
    add_event(
        session,
        job.id,
        f"Training paused at step {step}; resume the job to continue",
        kind=ServiceEvent.TRAINING_STOPPED,
        data={"step": step, "reason": "paused"},
    )
    session.commit()
    return "paused"


def _finish(
    session: Session, blobs: BlobStore, job: Job, result: Any, store_results: Any
) -> Outcome:
    """Leave a paused or cancelled job as it is; store a completed one's results and succeed it."""
    if result.stopped == "paused":
        add_event(
            session,
            job.id,
            f"Training paused at step {result.final_step}/{result.total_steps}; resume the job "
            "to continue from its last checkpoint",
            kind=ServiceEvent.TRAINING_STOPPED,
            data={"step": result.final_step, "reason": "paused"},
        )
        session.commit()
        return "paused"
    if result.stopped == "cancelled":
        # "Job cancelled" (written by the cancel) stays the job's last event; the log says more.
        status = jobs.current_status(session, job)
        logger.info("job %s stopped at step %d (%s)", job.id, result.final_step, status)
        return "cancelled"
    store_results(session, blobs, job, result)
    try:
        jobs.succeed_job(session, job)
    except InvalidRequestError:
        session.rollback()
        logger.info("job %s finished training but is now %s", job.id, job.status)
        return "cancelled"
    return "succeeded"
