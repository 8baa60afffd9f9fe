"""Engine fixtures (names prefixed so they never clash with other test packages)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from quaff_core.models import loading
from quaff_core.quant import plan

CUDA_REASON = "needs a CUDA device; this machine has none"
# the engine tests draw random token ids below this
TINY_VOCAB = 512

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
    """The built-in tiny-llama's architecture (`quaff_core.models.loading`), with a vocab of
    `TINY_VOCAB` tokens: builds in milliseconds."""
    return loading.tiny_llama_config(TINY_VOCAB)


@pytest.fixture
def tiny_llama(tiny_llama_config: LlamaConfig) -> LlamaForCausalLM:
    """A random-initialised tiny LlamaForCausalLM (seed 0), fp32, eval mode."""
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config).eval()


@pytest.fixture(autouse=True)
def quaff_int8_at_every_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the tests' tiny layers through the int8 kernels: under `auto` a CPU sends layers
    narrower than `plan.MIN_INT8_WIDTH` to the dequant backend, which would leave the int8 path
    untested (tests/quaff_core/quant/test_backends.py tests that rule itself)."""
    monkeypatch.setattr(plan, "MIN_INT8_WIDTH", {})
