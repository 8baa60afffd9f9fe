"""Engine fixtures (names prefixed so they never clash with other test packages)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from quaff_core.models import loading
from quaff_core.quant import capabilities, linear, plan
from quaff_core.training import runtime

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
    untested (tests/quaff_core/quant/test_backends.py tests that rule itself). On a CPU whose
    `auto` forward quantizes no activations (AVX2: "onednn_grad", or "dequant" without oneDNN),
    the layers and the run's runtime take the exact "fp32" int8 backend instead
    (tests/quaff_core/quant/test_backends.py tests each class's choice and each backend)."""
    monkeypatch.setattr(plan, "MIN_INT8_WIDTH", {})
    monkeypatch.setattr(plan, "MIN_GRAD_FEATURES", {})
    if capabilities.kernel_choice("cpu")[0] not in linear.DEQUANT_FORWARD:
        return
    exact: tuple[capabilities.Int8Backend, str] = (
        "fp32",
        "CPU without an int8 GEMM: the tests' exact int8 products through float32",
    )

    def choice(kind: str) -> tuple[capabilities.Int8Backend, str]:
        return exact if kind == "cpu" else capabilities.kernel_choice(kind)

    monkeypatch.setattr(
        plan, "int8_backend", lambda device: choice(capabilities._device_type(device))[0]
    )
    monkeypatch.setattr(runtime, "kernel_choice", choice)
