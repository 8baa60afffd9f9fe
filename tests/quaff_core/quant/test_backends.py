"""Every int8 backend against an exact int8 reference, and the per-layer rule of `auto`.

Error budgets: fbgemm's 7-bit products match the exact integer product of the same 7-bit
quantization to float32 rounding (relative 1e-5); a whole QuaffLinear on any backend stays within
2% (forward) / 3% (input gradient) of the float reference on Gaussian data with planted
outliers; "dequant" is the exact dequantized weight's product (relative 1e-6 in float32).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from quaff_core.quant import capabilities, plan
from quaff_core.quant.capabilities import INT8_BACKENDS
from quaff_core.quant.fbgemm import FbgemmPacks, fbgemm_available, fbgemm_mm, normalize_rows
from quaff_core.quant.linear import QuaffLinear

needs_fbgemm = pytest.mark.skipif(not fbgemm_available(), reason="torch without fbgemm")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def seven_bit_reference(x_n: torch.Tensor, q_w: torch.Tensor) -> torch.Tensor:
    """x_n [M, K] quantized as fbgemm does (u8, 7-bit range, per tensor) @ q_w^T, exactly."""
    scale, zero = torch._choose_qparams_per_tensor(x_n, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(x_n, scale, zero, torch.quint8).int_repr().long()
    assert int(q.max()) <= 128  # 128 x 127 x 2 < 2^15: AVX2's pair sums cannot saturate
    return ((q - zero) @ q_w.long().t()).double() * scale


@needs_fbgemm
@pytest.mark.parametrize(("m", "k", "n"), [(64, 320, 96), (5, 576, 192), (33, 128, 1000)])
def test_fbgemm_matches_the_exact_seven_bit_product(m: int, k: int, n: int) -> None:
    g = torch.Generator().manual_seed(m + k)
    x = torch.randn(m, k, generator=g) * torch.rand(m, 1, generator=g) * 50
    q_w = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g)
    packs = FbgemmPacks.of(q_w)
    x_n, _ = normalize_rows(x, None)
    assert rel_err(fbgemm_mm(x_n, packs.weight), seven_bit_reference(x_n, q_w)) <= 1e-5
    g_n, _ = normalize_rows(torch.randn(m, n, generator=g), None)
    assert rel_err(fbgemm_mm(g_n, packs.weight_t), seven_bit_reference(g_n, q_w.t())) <= 1e-5


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
    if backend == "fbgemm" and not fbgemm_available():
        pytest.skip("torch without fbgemm")
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
    monkeypatch.setattr(plan, "MIN_INT8_WIDTH", {"int_mm": 512, "fbgemm": 256})
    assert plan.layer_backend("int_mm", 576, 1536, "cpu") == "dequant"  # SmolLM2: 419
    assert plan.layer_backend("int_mm", 2048, 8192, "cpu") == "int_mm"  # Llama-1B: 1638
    assert plan.layer_backend("fbgemm", 576, 1536, "cpu") == "fbgemm"
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
    ("klass", "int8_probe", "fbgemm_probe", "expected"),
    [
        ("AVX512-VNNI/BF16", 0.05, 0.0, "int_mm"),
        ("AMX", 0.05, 0.0, "int_mm"),
        ("AVX2", 0.05, 1.8, "fbgemm"),
        ("AVX-VNNI", 0.05, 1.8, "fbgemm"),
        ("AVX2", 0.05, 0.9, "dequant"),
        ("other", 2.0, 0.0, "int_mm"),
    ],
)
def test_each_cpu_class_gets_its_kernel(
    monkeypatch: pytest.MonkeyPatch, klass: str, int8_probe: float, fbgemm_probe: float,
    expected: str,
) -> None:  # fmt: skip
    capabilities.kernel_choice.cache_clear()
    monkeypatch.setattr(capabilities, "cpu_class", lambda: klass)
    monkeypatch.setattr(capabilities, "_cpu_probe", lambda kind: int8_probe)
    monkeypatch.setattr(capabilities, "_fbgemm_probe", lambda: fbgemm_probe)
    monkeypatch.setattr(capabilities, "fbgemm_available", lambda: True)
    try:
        backend, reason = capabilities.kernel_choice("cpu")
    finally:
        capabilities.kernel_choice.cache_clear()
    assert backend == expected
    assert klass in reason
