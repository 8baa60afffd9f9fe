"""Create a fine-tuning job: the request's model, files, options, suffix and metadata checked
against the project, then the job stored as `queued`.

Each option value was checked at the edge (the API's body); the options are resolved in
`store.job_options`. What is checked here needs the database or the catalog: the base model or
the model continued from, the files, the outlier map, the adapter shape of a continued job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from sqlalchemy.orm import Session

from store import catalog, model_refs
from store.errors import InvalidRequestError, NotFoundError
from store.events import ServiceEvent, add_event
from store.files import get_file
from store.grading import checked_grader, grading_context
from store.ids import new_id, now_s
from store.job_metadata import checked_metadata
from store.job_options import JobOptions, resolve_options
from store.job_states import transition
from store.model_refs import ModelRef
from store.models import File, Job, OutlierMap
from store.owned import get_owned
from store.settings import Settings

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
# a continued job keeps the adapter it continues: these options cannot change
ADAPTER_SHAPE = {
    "lora": ("r", "target_modules", "use_dora"),
    "peft": ("method", "num_virtual_tokens"),
}
_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def create_job(
    session: Session, settings: Settings, project_id: str, body: Mapping[str, Any]
) -> Job:
    """Check a create request, store the job as `queued` and commit (the caller enqueues)."""
    model = _check_fields(body)
    start = _continued(session, project_id, model)
    entry = _base_entry(settings, start.base if start is not None else model)
    source = session.get(Job, start.job_id) if start is not None and start.job_id else None
    options = _options(body, entry, source)
    suffix, metadata = _check_scalars(body)
    training, validation = _datasets(session, project_id, body, options.method)
    grader = _grader(session, settings, project_id, options)
    map_id = _outlier_map(session, project_id, options, source=source, model=entry.id)
    now = now_s()
    job = Job(
        id=new_id("ftjob"), project_id=project_id, status="validating_files",
        model=entry.id,  # an alias (e.g. 'SmolLM2-135M-Instruct') is stored as the canonical id
        method=options.method, grader=grader, training_file_id=training.id,
        validation_file_id=validation.id if validation is not None else None,
        hyperparameters=options.hyperparameters, lora=options.lora, peft=options.peft,
        quantization={**options.quantization, "outlier_map": map_id}, training=options.training,
        seed=options.seed, suffix=suffix, meta=metadata, step=0, result_files=[],
        outlier_map_id=map_id, continued_from=start.name if start is not None else None,
        created_at=now, updated_at=now, attempts=0,
    )  # fmt: skip
    _queue(session, job)
    return job


def _grader(
    session: Session, settings: Settings, project_id: str, options: JobOptions
) -> dict[str, Any] | None:
    """A reinforcement job's grader, if it can run here (judges: the project's models)."""
    if options.method != "reinforcement":
        return None
    context = grading_context(lambda: nullcontext(session), settings, project_id)
    return checked_grader(options.grader, context, "method.reinforcement.grader")


def _check_fields(body: Mapping[str, Any]) -> str:
    """Only the create fields, and a `model` string (returned)."""
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise InvalidRequestError(f"Unrecognized request argument: {unknown[0]}", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required: a base model id", param="model")
    return model


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


def _options(body: Mapping[str, Any], entry: catalog.BaseModel, source: Job | None) -> JobOptions:
    """The resolved options: a continued job keeps its source's adapter shape, and LoRA target
    modules must name linear layers of the base."""
    if source is None:
        options = resolve_options(body)
    else:
        adapter = {"lora": source.lora, "peft": source.peft or {}}
        options = resolve_options({**adapter, **{k: v for k, v in body.items() if v is not None}})
        _check_same_adapter(options, adapter)
    _check_targets(entry, options.lora["target_modules"])
    return options


def _check_same_adapter(options: JobOptions, stored: Mapping[str, Mapping[str, Any]]) -> None:
    """The continued adapter's shape (method, rank, targets, virtual tokens) cannot change."""
    for group, keys in ADAPTER_SHAPE.items():
        for key in keys:
            before = stored[group].get(key, options.group(group)[key])
            if options.group(group)[key] != before:
                raise InvalidRequestError(
                    f"Invalid value for '{group}.{key}': the model continued from was trained "
                    f"with {before!r}; a continued job keeps its adapter's shape.",
                    param=f"{group}.{key}",
                )


def _check_targets(entry: catalog.BaseModel, targets: Any) -> None:
    """LoRA target modules must name linear layers of the base model (its catalog entry)."""
    if not isinstance(targets, list | tuple):
        return
    unknown = entry.unknown_modules(list(targets))
    if unknown:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in entry.linear_modules})
        raise InvalidRequestError(
            f"Invalid value for 'lora.target_modules': {unknown[0]!r} names no linear layer of "
            f"{entry.id} (its layers end in: {', '.join(leaves)}); use those names or "
            "'all-linear'.",
            param="lora.target_modules",
        )


def _check_scalars(body: Mapping[str, Any]) -> tuple[str | None, dict[str, str] | None]:
    """The suffix and the metadata; integrations are refused."""
    suffix = body.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not _SUFFIX.match(suffix)):
        raise InvalidRequestError(
            "Invalid value for 'suffix': 1 to 64 characters from A-Z a-z 0-9 _ . -", param="suffix"
        )
    if body.get("integrations"):
        raise InvalidRequestError("Integrations are not supported by Quaff.", param="integrations")
    return suffix, checked_metadata(body.get("metadata"))


def _datasets(
    session: Session, project_id: str, body: Mapping[str, Any], method: str
) -> tuple[File, File | None]:
    """The training file (enough examples) and the validation file, in the method's format."""
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
        None
        if validation_id is None
        else _usable_file(session, project_id, validation_id, "validation_file")
    )
    for row, param in ((training, "training_file"), (validation, "validation_file")):
        if row is not None:
            _check_format(row, method, param)
    return training, validation


def _usable_file(session: Session, project_id: str, file_id: Any, param: str) -> File:
    """A processed fine-tune file of the project."""
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
    if row.status == "uploaded":
        raise InvalidRequestError(
            f"File {file_id} is still being validated (status 'uploaded'); create the job once "
            "its status is 'processed'.",
            param=param,
            code="file_not_ready",
        )
    if row.status != "processed":
        detail = f": {row.status_details}" if row.status_details else ""
        raise InvalidRequestError(
            f"File {file_id} is not a valid dataset (status '{row.status}'){detail}",
            param=param,
            code="invalid_file",
        )
    return row


# the file format each method trains on (supervised: every other format)
METHOD_FORMATS = {"dpo": "preference", "reinforcement": "reinforcement"}
FORMAT_NAMES = {
    "preference": "preference pairs (input, preferred_output, non_preferred_output)",
    "reinforcement": "prompts (messages ending before the answer, plus the fields graders read)",
}


def _check_format(row: File, method: str, param: str) -> None:
    """DPO trains on preference pairs, reinforcement on prompts; supervised on the rest."""
    wanted = METHOD_FORMATS.get(method)
    if wanted is not None and row.data_format != wanted:
        raise InvalidRequestError(
            f"File {row.id} is in the '{row.data_format}' format; method '{method}' trains on "
            f"{FORMAT_NAMES[wanted]}.",
            param=param,
            code="invalid_file",
        )
    owner = next((m for m, f in METHOD_FORMATS.items() if f == row.data_format), None)
    if wanted is None and owner is not None:
        raise InvalidRequestError(
            f"File {row.id} holds {FORMAT_NAMES[str(row.data_format)]}, which train with method "
            f"'{owner}', not '{method}'.",
            param=param,
            code="invalid_file",
        )


def _outlier_map(
    session: Session, project_id: str, options: JobOptions, *, source: Job | None, model: str
) -> str | None:
    """The map to reuse: the one asked for, else a continued Quaff job's own (its adapter was
    trained on it); it must be the project's and calibrated for `model`."""
    map_id = options.quantization["outlier_map"]
    if map_id is None and source is not None and options.config.quantization == "quaff":
        map_id = source.outlier_map_id
    if map_id is None:
        return None
    param = "quantization.outlier_map"
    try:
        row = get_owned(session, OutlierMap, map_id, project_id)
    except NotFoundError:
        raise InvalidRequestError(
            f"No outlier map '{map_id}' in this project", param=param
        ) from None
    if row.base_model != model:
        raise InvalidRequestError(
            f"Outlier map {map_id} was calibrated for '{row.base_model}', not '{model}'",
            param=param,
        )
    return row.id


def _queue(session: Session, job: Job) -> None:
    """Store the job with its creation events, move it to queued and commit."""
    session.add(job)
    session.flush()
    add_event(session, job.id, f"Created fine-tuning job: {job.id}", kind=ServiceEvent.JOB_CREATED)
    add_event(
        session,
        job.id,
        f"Validating training file: {job.training_file_id}",
        kind=ServiceEvent.FILES_VALIDATING,
        data={"training_file": job.training_file_id, "validation_file": job.validation_file_id},
    )
    transition(session, job, "queued", reason="Files validated, moving job to queued state")
    session.commit()
