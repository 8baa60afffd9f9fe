"""The base models a job may start from: ids from the settings, availability from quaff_core."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from store.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseModel:
    """One catalog entry as the API shows it."""

    id: str
    available: bool
    reason: str | None


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)


def _availability() -> dict[str, tuple[bool, str | None]]:
    """Availability per id from `quaff_core.catalog` (torch-free); empty until it exists."""
    try:
        from quaff_core.catalog import list_base_models
    except ImportError:
        logger.debug("quaff_core.catalog not importable; treating catalog models as available")
        return {}
    found: dict[str, tuple[bool, str | None]] = {}
    for entry in list_base_models():
        found[str(_field(entry, "id"))] = (
            bool(_field(entry, "available")),
            _field(entry, "reason"),
        )
    return found


def base_models(settings: Settings) -> list[BaseModel]:
    """The configured catalog, in settings order."""
    known = _availability()
    return [
        BaseModel(
            id=model_id,
            available=known.get(model_id, (True, None))[0],
            reason=known.get(model_id, (True, None))[1],
        )
        for model_id in settings.base_models
    ]


def get_base_model(settings: Settings, model_id: str) -> BaseModel | None:
    """The catalog entry for `model_id`, or None when it is not a configured base model."""
    if model_id not in settings.base_models:
        return None
    return next(m for m in base_models(settings) if m.id == model_id)
