"""The base models a job may start from: ids from the settings, availability from quaff_core."""

from __future__ import annotations

from dataclasses import dataclass

from quaff_core.options.base_models import find_base_model
from store.settings import Settings


@dataclass(frozen=True)
class BaseModel:
    """One catalog entry as the API shows it."""

    id: str
    available: bool
    reason: str | None
    linear_modules: tuple[str, ...] = ()

    def unknown_modules(self, targets: list[str]) -> list[str]:
        """LoRA targets naming no linear layer; none known for models outside the catalog (a
        local path), whose targets the worker checks once the model is loaded."""
        info = find_base_model(self.id)
        return info.unknown_modules(targets) if info is not None and info.linear_modules else []


def _entry(model_id: str) -> BaseModel:
    """Availability of a configured id; ids outside quaff_core's catalog (local paths) are tried
    when a job loads them."""
    info = find_base_model(model_id)
    if info is None:
        return BaseModel(id=model_id, available=True, reason=None)
    return BaseModel(
        id=model_id,
        available=info.available,
        reason=info.reason,
        linear_modules=info.linear_modules,
    )


def base_models(settings: Settings) -> list[BaseModel]:
    """The configured catalog, in settings order."""
    return [_entry(model_id) for model_id in settings.base_models]


def get_base_model(settings: Settings, name: str) -> BaseModel | None:
    """The configured entry named by id or by a catalog alias, or None when not configured."""
    if name in settings.base_models:
        return _entry(name)
    info = find_base_model(name)
    if info is not None and info.id in settings.base_models:
        return _entry(info.id)
    return None
