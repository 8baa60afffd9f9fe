"""The names of fine-tuned models and checkpoints, in OpenAI's shape
`ft:<base model>:<project>:<suffix>:<short job id>` (checkpoints add `:ckpt-step-<step>`)."""

from __future__ import annotations

import re

from sqlalchemy.orm import object_session

from store.models import Job, Project

_SLUG_GAPS = re.compile(r"[^a-z0-9]+")


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
