"""Rebuild a trained model from an adapter directory: Quaff-convert as trained, attach its
adapter (LoRA side by side on a shared base; IA3 and virtual-token methods on their own)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn

from quaff_core.adapters.peft_layers import QuaffLoraLinear, wrap_for_ia3
from quaff_core.file_names import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    MOMENTUM_FILE,
    OUTLIER_MAP_FILE,
    QUAFF_FILE,
)
from quaff_core.quant.convert import convert_to_quaff, load_quaff_state_dict
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.outlier_map import OutlierMap


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


PROMPT_PEFT_TYPES = ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING")


def adapter_method(path: Path) -> str:
    """The PEFT type in the adapter's config: LORA, IA3, PREFIX_TUNING, PROMPT_TUNING, ..."""
    config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return str(config.get("peft_type", "LORA"))


def trained_quantization(path: Path) -> str:
    """`quaff` when the adapter was trained on the Quaff int8 base, else `none`."""
    method: str = adapter_facts(path).get("quantization", {}).get("method", "none")
    return method


def convert_as_trained(
    model: nn.Module, adapter: str | os.PathLike[str], *, compute_dtype: Any = None
) -> nn.Module:
    """Quaff-convert `model` in place with the adapter's outlier map when it was trained so.

    `compute_dtype` (e.g. torch.bfloat16) casts the model first and runs the int8 layers in it.
    """

    path = find_adapter_dir(adapter)
    if trained_quantization(path) == "quaff":
        facts = adapter_facts(path)["quantization"]
        # adapters written before scale_beta recorded the old-value weight `momentum`
        beta = facts.get("scale_beta", 1.0 - float(facts.get("momentum", 0.1)))
        if compute_dtype is not None:
            model.to(compute_dtype)
        convert_to_quaff(
            model,
            OutlierMap.load(path / OUTLIER_MAP_FILE),
            scale_beta=float(beta),
            compute_dtype=compute_dtype,
            compile=False,
            head_grad=False,
        )
    elif compute_dtype is not None:
        model.to(compute_dtype)
    return model


def attach_adapter(model: nn.Module, adapter: str | os.PathLike[str], name: str) -> Any:
    """Add the adapter as `name` (PEFT multi-adapter API) to a base or a PeftModel; returns it."""

    path = find_adapter_dir(adapter)
    config = PeftConfig.from_pretrained(str(path))
    config.inference_mode = True
    if isinstance(config, LoraConfig):
        config._register_custom_module({QuaffLinear: QuaffLoraLinear})
    elif isinstance(model, PeftModel):
        raise ValueError(
            f"adapter {os.fspath(path)!r} is a {config.peft_type} adapter: only LoRA adapters "
            "share a loaded base side by side; load it on its own base"
        )
    else:
        wrap_for_ia3(model, config)
        return PeftModel.from_pretrained(model, str(path), adapter_name=name, config=config)
    if isinstance(model, PeftModel):
        model.add_adapter(name, config)
        peft_model = model
    else:
        peft_model = get_peft_model(model, config, adapter_name=name)
    result = set_peft_model_state_dict(
        peft_model, load_file(str(path / ADAPTER_WEIGHTS)), adapter_name=name
    )
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"adapter {os.fspath(path)!r} does not fit this base model")
    return peft_model


def adapter_momentum(adapter: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The Quaff outlier-scale state saved with the adapter (None when it has none)."""

    path = find_adapter_dir(adapter)
    if trained_quantization(path) != "quaff" or not (path / MOMENTUM_FILE).is_file():
        return None
    return dict(load_file(str(path / MOMENTUM_FILE)))


def load_adapter(model: nn.Module, adapter: str | os.PathLike[str]) -> Any:
    """Rebuild a trained model: Quaff-convert with the adapter's outlier map, add its adapter."""

    convert_as_trained(model, adapter)
    peft_model = attach_adapter(model, adapter, "default")
    momentum = adapter_momentum(adapter)
    if momentum is not None:
        load_quaff_state_dict(peft_model, momentum)
    return peft_model
