"""Engine fixtures (names prefixed so they never clash with other test packages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM

CUDA_REASON = "needs a CUDA device; this machine has none"

# parametrize tests over these: CUDA runs where available, else skips with a reason
QUAFF_DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON),
        ],
    ),
]


@pytest.fixture
def tiny_llama_config() -> LlamaConfig:
    """A 2-layer Llama config, hidden 128, small vocab: builds in milliseconds."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )


@pytest.fixture
def tiny_llama(tiny_llama_config: LlamaConfig) -> LlamaForCausalLM:
    """A random-initialised tiny LlamaForCausalLM (seed 0), fp32, eval mode."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config).eval()
