"""Rebuild a trained model from an adapter directory: Quaff-convert as trained, attach LoRA."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from quaff_core.artifacts import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    MOMENTUM_FILE,
    OUTLIER_MAP_FILE,
    QUAFF_FILE,
)


def find_adapter_dir(path: str | os.PathLike[str]) -> Path:
    """The adapter directory: `path` itself, or `path/adapter` (a `train` output directory)."""
    base = Path(path)
    for candidate in (base, base / ADAPTER_DIR):
        if (candidate / ADAPTER_CONFIG).is_file() and (candidate / ADAPTER_WEIGHTS).is_file():
            return candidate
    raise ValueError(
        f"{os.fspath(path)!r} holds no adapter ({ADAPTER_CONFIG} + {ADAPTER_WEIGHTS}); "
        "pass the directory written by `quaff train` or its adapter/ subdirectory"
    )


def adapter_facts(path: Path) -> dict[str, Any]:
    """The adapter's quaff.json (empty for an adapter not written by Quaff)."""
    facts_file = path / QUAFF_FILE
    if not facts_file.is_file():
        return {}
    facts: dict[str, Any] = json.loads(facts_file.read_text(encoding="utf-8"))
    return facts


def load_adapter(model: nn.Module, adapter: str | os.PathLike[str]) -> Any:
    """Rebuild a trained model: Quaff-convert with the adapter's outlier map, add LoRA, load it."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from quaff_core.convert import convert_to_quaff, load_quaff_state_dict
    from quaff_core.outliers import OutlierMap
    from quaff_core.peft import add_lora

    path = find_adapter_dir(adapter)
    facts = adapter_facts(path)
    lora = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    quantization = facts.get("quantization", {}).get("method", "none")
    if quantization == "quaff":
        outlier_map = OutlierMap.load(path / OUTLIER_MAP_FILE)
        convert_to_quaff(model, outlier_map, momentum=facts["quantization"].get("momentum", 0.9))
    targets = lora["target_modules"]
    peft_model = add_lora(
        model,
        r=int(lora["r"]),
        alpha=float(lora["lora_alpha"]),
        target_modules=sorted(targets) if isinstance(targets, list) else targets,
    )
    result = set_peft_model_state_dict(peft_model, load_file(str(path / ADAPTER_WEIGHTS)))
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"adapter {os.fspath(path)!r} does not fit this base model")
    if quantization == "quaff" and (path / MOMENTUM_FILE).is_file():
        load_quaff_state_dict(peft_model, load_file(str(path / MOMENTUM_FILE)))
    return peft_model
