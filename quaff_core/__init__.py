"""Quaff quantized LoRA: the algorithm library, usable without the service.

Public names are imported lazily so that torch-free modules (`quaff_core.data`,
`quaff_core.catalog`) can be used by processes that never import torch, such as the API.
The trainer is the module `quaff_core.train`: use `from quaff_core.train import train`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "calibrate": "quaff_core.calibration",
    "OutlierMap": "quaff_core.outliers",
    "convert_to_quaff": "quaff_core.convert",
    "QuaffLinear": "quaff_core.linear",
    "add_lora": "quaff_core.peft",
    "add_adapter": "quaff_core.peft",
    "validate_jsonl": "quaff_core.data",
    "load_base_model": "quaff_core.models",
    "list_base_models": "quaff_core.catalog",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quaff_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
