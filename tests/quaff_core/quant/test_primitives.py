"""Quantize / dequantize passes: round trips, scale folding, eager == compiled."""

from __future__ import annotations

import pytest
import torch

from quaff_core.quant.primitives import (
    dequantize,
    get_quant_ops,
    quantize_rows,
    quantize_rows_u8,
    quantize_weight,
    scratch_buffer,
)


def test_quantize_weight_per_output_channel() -> None:
    w = torch.randn(12, 40) * torch.logspace(-2, 2, 12)[:, None]
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8
    assert scale.shape == (12,)
    assert int(q.abs().amax()) == 127
    back = q.float() * scale[:, None]
    # per-row error bounded by half a step of that row's scale
    assert bool(((back - w).abs() <= scale[:, None] / 2 + 1e-6).all())


def test_quantize_rows_folds_column_scale() -> None:
    x = torch.randn(6, 16)
    col = torch.rand(16) + 0.5
    q, row = quantize_rows(x, col)
    assert row.shape == (6, 1)
    torch.testing.assert_close(q.float() * row, x * col, atol=float(row.max()) / 2, rtol=0)
    assert int(q.abs().amax(dim=1).min()) == 127


def test_scratch_buffers_grow_to_the_largest_ask_and_never_alias_purposes() -> None:
    cpu = torch.device("cpu")
    big = scratch_buffer((64, 32), torch.float32, cpu, "test a")
    small = scratch_buffer((3, 5), torch.float32, cpu, "test a")
    assert small.shape == (3, 5)
    assert small.data_ptr() == big.data_ptr()  # one buffer per purpose, however many shapes
    other = scratch_buffer((3, 5), torch.float32, cpu, "test b")
    assert other.data_ptr() != small.data_ptr()
    grown = scratch_buffer((128, 32), torch.float32, cpu, "test a")
    assert grown.shape == (128, 32)
    assert scratch_buffer((64, 32), torch.float32, cpu, "test a").data_ptr() == grown.data_ptr()


def test_quantizing_through_the_scratch_buffer_leaves_results_and_input_alone() -> None:
    x = torch.randn(20, 24)
    x_before = x.clone()
    q, row = quantize_rows(x, None)
    q8, row8 = quantize_rows_u8(torch.randn(20, 24), torch.rand(24) + 0.5)  # reuses the buffer
    assert torch.equal(x, x_before)
    q_again, row_again = quantize_rows(x, None)
    assert torch.equal(q, q_again)
    assert torch.equal(row, row_again)
    assert q8.dtype == torch.uint8
    assert row8.shape == (20, 1)


def test_quantize_rows_zero_rows_are_safe() -> None:
    q, row = quantize_rows(torch.zeros(3, 8), None)
    assert bool((q == 0).all())
    assert bool(torch.isfinite(row).all())


def test_fused_outlier_terms_match_matmuls() -> None:
    eager = get_quant_ops(False)
    acc = torch.randint(-1000, 1000, (6, 5), dtype=torch.int32)
    row, col, bias = torch.rand(6, 1), torch.rand(5), torch.randn(5)
    x_o, w_corr = torch.randn(6, 3), torch.randn(5, 3)
    out = eager.dequantize_output(acc, row, col, x_o, w_corr, bias, torch.float32)
    torch.testing.assert_close(out, acc.float() * row * col + x_o @ w_corr.t() + bias)
    empty = eager.dequantize_output(
        acc, row, col, torch.zeros(6, 0), torch.zeros(5, 0), None, torch.float32
    )
    torch.testing.assert_close(empty, acc.float() * row * col)
    grad = torch.randn(6, 5)
    _, _, exact = eager.quantize_grad(grad, col, w_corr)
    torch.testing.assert_close(exact, grad @ w_corr)


def test_dequantize_applies_scales_and_addend() -> None:
    acc = torch.randint(-1000, 1000, (4, 5), dtype=torch.int32)
    row = torch.rand(4, 1)
    col = torch.rand(5)
    add = torch.randn(4, 5)
    out = dequantize(acc, row, col, add, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    expected = (acc.float() * row * col + add).bfloat16()
    torch.testing.assert_close(out, expected)


@pytest.mark.slow
def test_compiled_ops_match_eager() -> None:
    x = torch.randn(33, 48)
    col = torch.rand(48) + 0.5
    eager, compiled = get_quant_ops(False), get_quant_ops(True)
    q_e, s_e = eager.quantize_activation(x, col)
    q_c, s_c = compiled.quantize_activation(x, col)
    torch.testing.assert_close(s_c, s_e)
    assert float((q_c.int() - q_e.int()).abs().max()) <= 1  # rounding ties may differ
    acc = torch.randint(-1000, 1000, (33, 7), dtype=torch.int32)
    col7 = torch.rand(7)
    x_o, w_corr = torch.randn(33, 2), torch.randn(7, 2)
    torch.testing.assert_close(
        compiled.dequantize_output(acc, s_e, col7, x_o, w_corr, None, torch.float32),
        eager.dequantize_output(acc, s_e, col7, x_o, w_corr, None, torch.float32),
    )
    g = torch.randn(33, 7)
    for got, want in zip(
        compiled.quantize_grad(g, col7, w_corr), eager.quantize_grad(g, col7, w_corr), strict=True
    ):
        torch.testing.assert_close(got, want)
    for got, want in zip(
        compiled.quantize_grad_u8(g, col7, w_corr),
        eager.quantize_grad_u8(g, col7, w_corr),
        strict=True,
    ):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(
        compiled.dequantize_grad(acc, s_e, torch.bfloat16),
        eager.dequantize_grad(acc, s_e, torch.bfloat16),
    )
