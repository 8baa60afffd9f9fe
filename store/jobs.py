"""Fine-tuning jobs: create, read, list and the user's controls (cancel, pause, resume).

The transition table lives in `store.job_states` and the worker's calls in `store.job_runs`; both
are re-exported here so callers can use `store.jobs.<name>` for everything about jobs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from store import catalog, model_refs
from store.errors import InvalidRequestError, NotFoundError
from store.events import ServiceEvent, add_event
from store.files import get_file
from store.ids import new_id, now_s
from store.job_options import resolve_options
from store.job_runs import (
    claim_job,
    current_status,
    fail_job,
    heartbeat,
    record_progress,
    set_result,
    succeed_job,
)
from store.job_states import check_transition, ensure_can, transition
from store.job_status import TERMINAL, TRANSITIONS
from store.model_refs import ModelRef
from store.models import File, Job, OutlierMap, Project
from store.pages import page
from store.settings import Settings

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_TRAINING_EXAMPLES",
    "TERMINAL",
    "TRANSITIONS",
    "cancel_job",
    "check_transition",
    "checkpoint_model_name",
    "claim_job",
    "create_job",
    "current_status",
    "ensure_can",
    "fail_job",
    "fine_tuned_model_name",
    "get_job",
    "heartbeat",
    "list_jobs",
    "pause_job",
    "record_progress",
    "resume_job",
    "set_result",
    "succeed_job",
    "transition",
]

MIN_TRAINING_EXAMPLES = 10
CREATE_FIELDS = frozenset(
    {
        "model",
        "training_file",
        "validation_file",
        "hyperparameters",
        "method",
        "suffix",
        "seed",
        "metadata",
        "integrations",
        "lora",
        "peft",
        "quantization",
        "training",
    }
)
_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SLUG_GAPS = re.compile(r"[^a-z0-9]+")
_BAD_KEY = re.compile(r"[\"\\\x00-\x1f\x7f]")


def project_slot(name: str, project_id: str) -> str:
    """The organization part of a fine-tuned name: the project's name as a slug (lower case,
    a-z 0-9 and '-', at most 40 characters), or its id when nothing of the name is left."""
    slug = _SLUG_GAPS.sub("-", name.lower()).strip("-")[:40].strip("-")
    return slug or project_id


def fine_tuned_model_name(job: Job) -> str:
    """OpenAI's shape `ft:<base model>:<project>:<suffix>:<short job id>`, with the project in
    the organization's place (`project_slot`); the suffix part may be empty."""
    session = object_session(job)
    project = session.get(Project, job.project_id) if session is not None else None
    slot = project_slot(project.name, project.id) if project is not None else job.project_id
    return f"ft:{job.model}:{slot}:{job.suffix or ''}:{job.id[-8:]}"


def checkpoint_model_name(job: Job, step: int) -> str:
    """The model name of a checkpoint: the fine-tuned name plus `:ckpt-step-<step>`."""
    return f"{fine_tuned_model_name(job)}:ckpt-step-{step}"


def _usable_file(session: Session, project_id: str, file_id: Any, param: str) -> File:
    if not isinstance(file_id, str) or not file_id:
        raise InvalidRequestError(f"'{param}' must be a file id like 'file-...'", param=param)
    try:
        row = get_file(session, project_id, file_id)
    except NotFoundError:
        raise InvalidRequestError(
            f"invalid {param}: no file '{file_id}' in this project",
            param=param,
            code="invalid_file",
        ) from None
    if row.purpose != "fine-tune":
        raise InvalidRequestError(
            f"File {file_id} has purpose '{row.purpose}', not 'fine-tune'.", param=param
        )
    if row.status != "processed":
        detail = f": {row.status_details}" if row.status_details else ""
        raise InvalidRequestError(
            f"File {file_id} is not a valid dataset (status '{row.status}'){detail}",
            param=param,
            code="invalid_file",
        )
    return row


def _check_targets(entry: catalog.BaseModel, targets: Any) -> None:
    """LoRA target modules must name linear layers of the base model (its catalog entry)."""
    if not isinstance(targets, list | tuple):
        return
    unknown = entry.unknown_modules(list(targets))
    if unknown:
        raise InvalidRequestError(
            f"Invalid value for 'lora.target_modules': {unknown[0]!r} names no linear layer of "
            f"{entry.id} (its layers end in: {', '.join(sorted(_leaf_names(entry)))}); use those "
            "names or 'all-linear'.",
            param="lora.target_modules",
        )


def _leaf_names(entry: catalog.BaseModel) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name in entry.linear_modules}


def check_metadata_key(key: str, param: str) -> None:
    """A metadata key: 1 to 64 characters, none of them quotes, backslashes or control
    characters (keys are matched inside JSON paths by the list filter)."""
    if not key or len(key) > 64 or _BAD_KEY.search(key):
        raise InvalidRequestError(
            f"Invalid metadata key {key[:64]!r}: 1 to 64 characters, without quotes, backslashes "
            "or control characters.",
            param=param,
        )


def _check_scalars(body: Mapping[str, Any]) -> tuple[str | None, dict[str, str] | None]:
    suffix = body.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not _SUFFIX.match(suffix)):
        raise InvalidRequestError(
            "Invalid value for 'suffix': 1 to 64 characters from A-Z a-z 0-9 _ . -", param="suffix"
        )
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or len(metadata) > 16:
            raise InvalidRequestError(
                "'metadata' must be an object of at most 16 pairs", param="metadata"
            )
        for key, value in metadata.items():
            check_metadata_key(str(key), f"metadata.{str(key)[:64]}")
            if not isinstance(value, str) or len(value) > 512:
                raise InvalidRequestError(
                    f"metadata[{key!r}]: keys are at most 64 characters, values strings of at "
                    "most 512",
                    param=f"metadata.{key}",
                )
        metadata = dict(metadata)
    if body.get("integrations"):
        raise InvalidRequestError("Integrations are not supported by Quaff.", param="integrations")
    return suffix, metadata


def _continued(session: Session, project_id: str, name: str) -> ModelRef | None:
    """The project's fine-tuned model or checkpoint called `name` (None: not one of them)."""
    if not name.startswith("ft:"):
        return None
    ref = model_refs.tuned_model(session, project_id, name)
    if ref is None:
        raise InvalidRequestError(
            f"No fine-tuned model or checkpoint '{name[:255]}' in this project",
            param="model",
            code="model_not_found",
        )
    return ref


ADAPTER_SHAPE = {
    "lora": ("r", "target_modules", "use_dora"),
    "peft": ("method", "num_virtual_tokens"),
}


def _with_source_adapter(body: Mapping[str, Any], source: Job | None) -> Mapping[str, Any]:
    """A continued job's request with the source job's adapter options where it sent none."""
    if source is None:
        return body
    given = {"lora": source.lora, "peft": source.peft or {}}
    return {**given, **{k: v for k, v in body.items() if v is not None}}


def _check_same_adapter(options: Any, source: Job) -> None:
    """The continued adapter's shape (method, rank, targets, virtual tokens) cannot change."""
    stored = {"lora": source.lora, "peft": source.peft or {}}
    for group, keys in ADAPTER_SHAPE.items():
        for key in keys:
            before = stored[group].get(key, options.group(group)[key])
            if options.group(group)[key] != before:
                raise InvalidRequestError(
                    f"Invalid value for '{group}.{key}': the model continued from was trained "
                    f"with {before!r}; a continued job keeps its adapter's shape.",
                    param=f"{group}.{key}",
                )


def _base_entry(settings: Settings, model: str) -> catalog.BaseModel:
    """The catalog entry of a base model, usable on this host."""
    entry = catalog.get_base_model(settings, model)
    if entry is None:
        raise InvalidRequestError(
            f"Model '{model}' is not a base model of this server; choose one of: "
            f"{', '.join(settings.base_models)}",
            param="model",
            code="model_not_found",
        )
    if not entry.available:
        raise InvalidRequestError(
            f"Model '{model}' is not available here: {entry.reason}",
            param="model",
            code="model_not_available",
        )
    return entry


def _check_format(row: File, method: str, param: str) -> None:
    """DPO trains on preference pairs only; supervised on everything else."""
    pairs = row.data_format == "preference"
    if method == "dpo" and not pairs:
        raise InvalidRequestError(
            f"File {row.id} is in the '{row.data_format}' format; method 'dpo' trains on "
            "preference pairs (input, preferred_output, non_preferred_output).",
            param=param,
            code="invalid_file",
        )
    if method != "dpo" and pairs:
        raise InvalidRequestError(
            f"File {row.id} holds preference pairs, which train with method 'dpo', not "
            "'supervised'.",
            param=param,
            code="invalid_file",
        )


def create_job(
    session: Session, settings: Settings, project_id: str, body: Mapping[str, Any]
) -> Job:
    """Validate a create request, store the job as `queued` and commit (the caller enqueues)."""
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise InvalidRequestError(f"Unrecognized request argument: {unknown[0]}", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required: a base model id", param="model")
    start = _continued(session, project_id, model)
    entry = _base_entry(settings, start.base if start is not None else model)
    model = entry.id  # an alias (e.g. 'SmolLM2-135M-Instruct') is stored as the canonical id
    source = session.get(Job, start.job_id) if start is not None and start.job_id else None
    options = resolve_options(_with_source_adapter(body, source))
    if source is not None:
        _check_same_adapter(options, source)
    _check_targets(entry, options.lora["target_modules"])
    suffix, metadata = _check_scalars(body)
    training = _usable_file(session, project_id, body.get("training_file"), "training_file")
    if (training.n_examples or 0) < MIN_TRAINING_EXAMPLES:
        raise InvalidRequestError(
            f"Training file {training.id} has {training.n_examples or 0} example(s); a job needs "
            f"at least {MIN_TRAINING_EXAMPLES}.",
            param="training_file",
            code="invalid_n_examples",
        )
    validation_id = body.get("validation_file")
    validation = (
        _usable_file(session, project_id, validation_id, "validation_file")
        if validation_id is not None
        else None
    )
    for row, param in ((training, "training_file"), (validation, "validation_file")):
        if row is not None:
            _check_format(row, options.method, param)
    map_id = options.quantization["outlier_map"]
    if map_id is None and source is not None and options.config.quantization == "quaff":
        map_id = source.outlier_map_id  # the continued adapter was trained on that map
        options.quantization["outlier_map"] = map_id
    if map_id is not None:
        om = session.get(OutlierMap, map_id)
        if om is None or om.project_id != project_id:
            raise InvalidRequestError(
                f"No outlier map '{map_id}' in this project", param="quantization.outlier_map"
            )
        if om.base_model != model:
            raise InvalidRequestError(
                f"Outlier map {map_id} was calibrated for '{om.base_model}', not '{model}'",
                param="quantization.outlier_map",
            )
    now = now_s()
    job = Job(
        id=new_id("ftjob"),
        project_id=project_id,
        status="validating_files",
        model=model,
        method=options.method,
        training_file_id=training.id,
        validation_file_id=validation_id,
        hyperparameters=options.hyperparameters,
        lora=options.lora,
        peft=options.peft,
        quantization=options.quantization,
        training=options.training,
        seed=options.seed,
        suffix=suffix,
        meta=metadata or None,
        step=0,
        result_files=[],
        outlier_map_id=map_id,
        continued_from=start.name if start is not None else None,
        created_at=now,
        updated_at=now,
        attempts=0,
    )
    session.add(job)
    session.flush()
    add_event(session, job.id, f"Created fine-tuning job: {job.id}", kind=ServiceEvent.JOB_CREATED)
    add_event(
        session,
        job.id,
        f"Validating training file: {training.id}",
        kind=ServiceEvent.FILES_VALIDATING,
        data={"training_file": training.id, "validation_file": validation_id},
    )
    transition(session, job, "queued", reason="Files validated, moving job to queued state")
    session.commit()
    return job


def get_job(session: Session, project_id: str, job_id: str) -> Job:
    """The project's job; NotFoundError when absent or another project's."""
    job = session.get(Job, job_id)
    if job is None or job.project_id != project_id:
        raise NotFoundError("fine-tuning job", job_id)
    return job


def list_jobs(
    session: Session,
    project_id: str,
    *,
    after: str | None = None,
    limit: int = 20,
    metadata: Mapping[str, str] | None = None,
    without_metadata: bool = False,
) -> tuple[list[Job], bool]:
    """A page of the project's jobs newest first, filtered by metadata pairs (or by having none)."""
    query = select(Job).where(Job.project_id == project_id)
    if without_metadata:
        query = query.where(Job.meta.is_(None))
    for key, value in (metadata or {}).items():
        check_metadata_key(key, f"metadata[{key[:64]}]")
        query = query.where(Job.meta[key].as_string() == value)
    return page(session, query, Job.id, after=after, limit=limit)


def cancel_job(session: Session, job: Job) -> Job:
    """Cancel now (a running worker sees it between steps); commits."""
    transition(session, job, "cancelled", reason="Job cancelled by the user")
    session.commit()
    return job


def pause_job(session: Session, job: Job) -> Job:
    """Pause: the worker checkpoints at the next step boundary and exits; commits."""
    was = job.status
    transition(
        session,
        job,
        "paused",
        reason="Job paused by the user"
        + ("; training stops after the next checkpoint" if was == "running" else ""),
    )
    session.commit()
    return job


def resume_job(session: Session, job: Job) -> Job:
    """Back to queued (the caller re-enqueues after this commit)."""
    transition(session, job, "queued", reason="Job resumed; waiting for a worker")
    session.commit()
    return job
