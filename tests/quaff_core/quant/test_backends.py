"""Every int8 backend against an exact int8 reference, and the per-layer rule of `auto`.

Error budgets: oneDNN's products (8-bit activations, 7-bit weights) equal the exact integer
product of the same levels (in float32, exact below 2^24); a whole QuaffLinear on any backend
stays within 2% (forward) / 3% (input gradient) of the float reference on Gaussian data with planted
outliers; "dequant" is the exact dequantized weight's product (relative 1e-6 in float32).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from quaff_core.quant import capabilities, plan
from quaff_core.quant.capabilities import INT8_BACKENDS
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.onednn import W7_MAX, W7_RESCALE, OnednnPacks, onednn_available, seven_bit
from quaff_core.quant.primitives import INT8_MAX, U8_ZERO, quantize_rows_u8

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="torch without oneDNN")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@needs_onednn
@pytest.mark.parametrize(("m", "k", "n"), [(64, 320, 96), (5, 576, 192), (33, 128, 1000)])
def test_onednn_is_the_exact_product_of_its_levels(m: int, k: int, n: int) -> None:
    g = torch.Generator().manual_seed(m + k)
    x = torch.randn(m, k, generator=g) * torch.rand(m, 1, generator=g) * 50
    q_w = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g)
    packs, w7 = OnednnPacks.of(q_w), seven_bit(q_w).long()
    assert int(w7.abs().max()) <= W7_MAX  # 2 x 255 x 63 < 2^15: AVX2's pair sums cannot saturate
    q, _ = quantize_rows_u8(x, None)
    assert torch.equal(packs.forward_mm(q).long(), (q.long() - U8_ZERO) @ w7.t())
    g_q, _ = quantize_rows_u8(torch.randn(m, n, generator=g), None)
    assert torch.equal(packs.grad_mm(g_q).long(), (g_q.long() - U8_ZERO) @ w7)


def test_uint8_rows_and_seven_bit_weights_keep_their_levels() -> None:
    x = torch.tensor([[-254.0, 0.0, 20.0, 254.0], [0.0, 0.0, 0.0, 0.0]])
    q, scale = quantize_rows_u8(x, None)
    assert q.dtype == torch.uint8
    assert q[0].tolist() == [U8_ZERO - 127, U8_ZERO, U8_ZERO + 10, U8_ZERO + 127]
    assert q[1].tolist() == [U8_ZERO] * 4  # a zero row stays zero, no division by zero
    assert float(scale[0]) == pytest.approx(254.0 / INT8_MAX)
    w = torch.tensor([[-127, -2, 0, 1, 2, 3, 127]], dtype=torch.int8)
    w7 = seven_bit(w)
    assert w7.tolist() == [[-63, -1, 0, 0, 1, 1, 63]]
    assert float((w7.float() * W7_RESCALE - w.float()).abs().max()) <= W7_RESCALE / 2 + 1e-6


def planted_pair(backend: Any, k: int = 256, n: int = 192) -> tuple[nn.Linear, QuaffLinear]:
    """A float reference linear and its Quaff copy on `backend`, 1% outlier channels."""
    torch.manual_seed(3)
    ref = nn.Linear(k, n)
    channels = list(range(7, k, 97))
    quaff = QuaffLinear.from_linear(
        copy.deepcopy(ref), channels, compute_dtype=torch.float32, compile=False, backend=backend
    )
    return ref, quaff


@pytest.mark.parametrize("backend", INT8_BACKENDS)
def test_every_backend_keeps_the_error_budget(backend: str) -> None:
    if backend == "onednn" and not onednn_available():
        pytest.skip("torch without oneDNN")
    ref, quaff = planted_pair(backend)
    x = torch.randn(48, 256)
    x[:, 7::97] *= 100.0
    x_ref = x.clone().requires_grad_()
    x_q = x.clone().requires_grad_()
    grad = torch.randn(48, 192)
    ref(x_ref).backward(grad)
    quaff.train()
    out = quaff(x_q)
    out.backward(grad)
    assert rel_err(out, ref(x)) <= 0.02
    assert x_q.grad is not None
    assert x_ref.grad is not None
    assert rel_err(x_q.grad, x_ref.grad) <= 0.03


def test_dequant_is_the_dequantized_weights_exact_product() -> None:
    ref, quaff = planted_pair("dequant")
    w = quaff.weight.float() * quaff.weight_scale[:, None]
    w[:, quaff.outlier_idx] = quaff.outlier_weight
    x = torch.randn(16, 256, requires_grad=True)
    grad = torch.randn(16, 192)
    out = quaff(x)
    out.backward(grad)
    assert rel_err(out, x.detach() @ w.t() + ref.bias.detach()) <= 1e-6
    assert x.grad is not None
    assert rel_err(x.grad, grad @ w) <= 1e-6
    assert not bool(quaff.outlier_scale_initialized)  # no scale to follow on this backend


def test_int_mm_and_fp32_backends_compute_the_same_integers() -> None:
    _, a = planted_pair("int_mm")
    _, b = planted_pair("fp32")
    x = torch.randn(20, 256)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), rtol=1e-5, atol=1e-5)


def test_auto_sends_narrow_layers_to_dequant_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "MIN_INT8_WIDTH", {"int_mm": 512})
    assert plan.layer_backend("int_mm", 576, 1536, "cpu") == "dequant"  # SmolLM2: 419
    assert plan.layer_backend("int_mm", 2048, 8192, "cpu") == "int_mm"  # Llama-1B: 1638
    assert plan.layer_backend("dequant", 576, 1536, "cpu") == "dequant"
    assert plan.layer_backend("int_mm", 576, 192, "cuda") == "int_mm"
    layer = QuaffLinear(576, 192, compute_dtype=torch.float32)
    assert layer.backend_for(torch.device("cpu")) in ("dequant", "fp32")
    layer.backend_setting = "int_mm"
    assert layer.backend_for(torch.device("cpu")) == "int_mm"


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="int8 backend"):
        QuaffLinear(8, 8, backend="turbo")  # type: ignore[arg-type]


def test_compile_must_earn_its_warm_up_back() -> None:
    short = plan.compile_pays("cpu", n_params=500_000_000, tokens_per_step=1024, total_steps=3)
    long = plan.compile_pays("cpu", n_params=500_000_000, tokens_per_step=1024, total_steps=300)
    assert not short.compile
    assert long.compile
    assert "earns back" in long.reason


@pytest.mark.parametrize(
    ("klass", "int8_probe", "expected"),
    [
        ("AVX512-VNNI/BF16", 0.05, "int_mm"),
        ("AMX", 0.05, "int_mm"),
        ("AVX2", 0.05, "dequant"),  # onednn is faster but misses the accuracy bars
        ("AVX-VNNI", 0.05, "dequant"),
        ("other", 2.0, "int_mm"),
        ("other", 0.05, "dequant"),
    ],
)
def test_each_cpu_class_gets_its_kernel(
    monkeypatch: pytest.MonkeyPatch, klass: str, int8_probe: float, expected: str
) -> None:
    capabilities.kernel_choice.cache_clear()
    monkeypatch.setattr(capabilities, "cpu_class", lambda: klass)
    monkeypatch.setattr(capabilities, "_cpu_probe", lambda kind: int8_probe)
    try:
        backend, reason = capabilities.kernel_choice("cpu")
    finally:
        capabilities.kernel_choice.cache_clear()
    assert backend == expected
    assert klass in reason
