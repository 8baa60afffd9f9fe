"""Train a job on one device of this worker: a warm base where it has one (else load and
convert one, and keep it), data tokenised once, the job's outlier map."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from quaff_core.errors import NothingToTrainError, StartAdapterError, UnsupportedExamplesError
from quaff_core.lm.tokenization import TokenizedDataset
from quaff_core.models.loading import ModelLoadError, load_base_model
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.train_events import EventKind
from quaff_core.training.base import TrainingBase, prepare_base
from quaff_core.training.datasets import TrainingData, tokenize_data
from quaff_core.training.rft import GraderReward
from quaff_core.training.runtime import Runtime, resolve_runtime
from quaff_core.training.train import TrainResult, train
from store.db import session_factory
from store.device_lock import DeviceTurnstile, lock_dir, lock_name
from store.events import ServiceEvent, add_event
from store.grading import grading_context
from store.models import Job
from store.settings import Settings
from worker.device_share import DeviceSharing, ReleasingJudge, layer_yields
from worker.job_run import TOKENIZER_DIR, JobRun
from worker.options import JobFailure
from worker.outliers import resolve_outlier_map
from worker.warm import DataKey, warm_state
from worker.warm_bases import BaseKey, map_digest


def resolve_device(settings: Settings) -> str:
    """`cuda` when configured or detected, else `cpu` (the process sees only the chosen GPU)."""
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
    if not settings.infer_yield_to_training:
        return None
    name = lock_name(settings.device, torch.cuda.is_available())
    return DeviceTurnstile(lock_dir(settings.data_dir), name)


def out_of_memory_error(job: Job, device: str) -> JobFailure:
    """The actionable out-of-memory failure, naming the batch size that caused it."""
    batch = job.hyperparameters.get("batch_size")
    length = job.training.get("max_seq_length")
    return JobFailure(
        "out_of_memory",
        f"Out of {device} memory with batch_size={batch} and max_seq_length={length}. Lower "
        "hyperparameters.batch_size (raise training.gradient_accumulation_steps to keep the "
        "effective batch) or training.max_seq_length, then create the job again.",
        "hyperparameters.batch_size",
    )


@contextmanager
def data_failures() -> Iterator[None]:
    """Data and start-adapter errors of the library as the JobFailure a user can act on."""
    try:
        yield
    except UnsupportedExamplesError as exc:
        param = "validation_file" if exc.dataset == "validation" else "training_file"
        raise JobFailure("invalid_training_data", str(exc), param) from exc
    except StartAdapterError as exc:
        raise JobFailure("invalid_model", str(exc), "model") from exc
    except NothingToTrainError as exc:
        message = (
            f"Nothing to train on: no {exc.dataset} example has a trainable token within "
            f"max_seq_length={exc.max_seq_length}; raise training.max_seq_length."
        )
        raise JobFailure("invalid_training_data", message, "training.max_seq_length") from exc


def load_job_base(run: JobRun, device: str) -> tuple[Any, Any]:
    """The job's base model and tokenizer on `device` (the tokenizer also saved for checkpoints)."""
    add_event(
        run.session,
        run.job.id,
        f"Loading base model {run.job.model} on {device}",
        kind=EventKind.MODEL_LOADING,
        data={"model": run.job.model, "device": device},
    )
    run.session.commit()
    try:
        model, tokenizer = load_base_model(run.job.model, device=device)
    except ModelLoadError as exc:
        message = f"Cannot load {run.job.model}: {exc}"
        raise JobFailure("model_not_available", message, "model") from exc
    check_target_modules(model, run.config.lora_target_modules, run.job.model)
    return model, tokenizer


def check_target_modules(model: Any, targets: Any, model_id: str) -> None:
    """LoRA targets must name linear layers of the loaded model (catalog models are checked at
    create; a local model only here); JobFailure naming `lora.target_modules` otherwise."""
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


def job_data(run: JobRun, tokenizer: Any) -> TrainingData:
    """The job's training and validation sets, read and tokenised once (and kept for the next
    job on the same files)."""
    config, valid = run.config, run.valid_file
    key = DataKey(
        model=run.job.model,
        train_sha256=run.train_file.sha256,
        valid_sha256=valid.sha256 if valid is not None else "",
        method=config.method,
        max_seq_length=config.max_seq_length,
        train_on_inputs=str(config.train_on_inputs),
    )
    cache = warm_state(run.settings).data
    data = cache.get(key)
    if data is None:
        with data_failures():
            path = run.path(valid) if valid is not None else None
            data = tokenize_data(run.path(run.train_file), path, tokenizer, config)
        cache.put(key, data)
    return data


def job_map(
    run: JobRun, model: Callable[[], Any], tokenizer: Any, dataset: Callable[[], TokenizedDataset]
) -> OutlierMap | None:
    """The job's outlier map (see `resolve_outlier_map`); a new one is calibrated on `model()`."""
    return resolve_outlier_map(
        run.session,
        run.blobs,
        run.job,
        run.config,
        run.train_file,
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        resuming=run.resume is not None,
    )


class ColdBase:
    """The job's base loaded from disk, only when needed (a tokenizer, a calibration, a new warm
    base), at most once."""

    def __init__(self, run: JobRun, device: str, runtime: Runtime) -> None:
        self.run, self.device, self.runtime = run, device, runtime
        self.loaded: tuple[Any, Any] | None = None

    def pair(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use."""
        if self.loaded is None:
            self.loaded = load_job_base(self.run, self.device)
        return self.loaded

    def calibration_model(self) -> Any:
        """The unconverted model in the compute dtype, as training's forward will run."""
        model = self.pair()[0]
        return model.to(self.runtime.dtype) if self.runtime.compute_dtype == "bfloat16" else model


def _warm_event(run: JobRun, key: BaseKey) -> None:
    """Say that the job trains on a base this worker holds."""
    add_event(
        run.session,
        run.job.id,
        f"Training on the warm base {key.model} ({key.compute_dtype}, loaded and converted by an "
        "earlier job on this worker)",
        kind=ServiceEvent.WARM_BASE,
        data={
            "model": key.model,
            "outlier_map": run.job.outlier_map_id,
            "compute_dtype": key.compute_dtype,
        },
    )
    run.session.commit()


def job_base(
    run: JobRun, cold: ColdBase, data: TrainingData, outlier_map: OutlierMap | None
) -> TrainingBase:
    """The prepared base for the job: a warm one of this worker, else converted now and kept."""
    warm = warm_state(run.settings)
    key = BaseKey(run.job.model, map_digest(outlier_map), cold.runtime.compute_dtype, cold.device)
    base = warm.bases.get(key)
    if base is not None:
        _warm_event(run, key)
        return base
    model, tokenizer = cold.pair()
    base = prepare_base(
        model,
        tokenizer,
        base_id=run.job.model,
        config=run.config,
        runtime=cold.runtime,
        outlier_map=outlier_map,
        data=data,
        callbacks=run.callbacks,
    )
    warm.bases.put(key, base)
    return base


def _train(run: JobRun, base: TrainingBase, data: TrainingData) -> TrainResult:
    """`train` with the job's inputs, holding the device turnstile while it runs."""
    turnstile = device_turnstile(run.settings)
    if turnstile is not None:
        turnstile.acquire()
    try:
        with data_failures(), layer_yields(turnstile) if turnstile else nullcontext():
            return train(
                base,
                data,
                run.work / "run",
                config=run.config,
                callbacks=DeviceSharing(run.callbacks, turnstile) if turnstile else run.callbacks,
                resume_from=run.resume,
                start_from=run.start,
                reward=job_reward(run, turnstile),
            )
    finally:
        if turnstile is not None:
            turnstile.release()


def job_reward(run: JobRun, turnstile: DeviceTurnstile | None = None) -> GraderReward | None:
    """A reinforcement job's reward: its grader, judged by the project's models (else None); with
    a turnstile, the device is let go while a judge answers."""
    if run.job.method != "reinforcement" or run.job.grader is None:
        return None
    context = grading_context(session_factory(run.settings), run.settings, run.job.project_id)
    if turnstile is not None and context.judge is not None:
        context = replace(context, judge=ReleasingJudge(context.judge, turnstile))
    return GraderReward(run.job.grader, context)


def train_single(run: JobRun) -> TrainResult:
    """Train the job on this worker's device, on a warm base where it has one."""
    device = resolve_device(run.settings)
    cold = ColdBase(run, device, resolve_runtime(run.config, device))
    tokenizer = warm_state(run.settings).tokenizer_for(run.job.model) or cold.pair()[1]
    tokenizer.save_pretrained(str(run.work / TOKENIZER_DIR))
    data = job_data(run, tokenizer)
    outlier_map = job_map(run, cold.calibration_model, tokenizer, lambda: data.train_set)
    try:
        base = job_base(run, cold, data, outlier_map)
        cold.loaded = None  # the base owns the model now; nothing else holds it
        return _train(run, base, data)
    except torch.OutOfMemoryError as exc:
        raise out_of_memory_error(run.job, device) from exc
