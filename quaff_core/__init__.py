"""Quaff quantized LoRA: the algorithm library, usable without the service.

One folder per concern, each importing only folders below it:
`training/` → `adapters/`, `calibration/` → `quant/`, `lm/`, `models/` → `data/` → `options/`.
`options/` and `data/`, with the top-level `errors`, `train_events` and `file_names`, never import
torch: the API and the store use them. Public names below are imported lazily for the same reason.
The trainer: `from quaff_core.training.train import train`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "calibrate": "quaff_core.calibration.calibrate",
    "OutlierMap": "quaff_core.quant.outlier_map",
    "convert_to_quaff": "quaff_core.quant.convert",
    "QuaffLinear": "quaff_core.quant.linear",
    "add_lora": "quaff_core.adapters.peft_layers",
    "add_adapter": "quaff_core.adapters.peft_layers",
    "validate_jsonl": "quaff_core.data.jsonl",
    "load_base_model": "quaff_core.models.loading",
    "list_base_models": "quaff_core.options.base_models",
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
