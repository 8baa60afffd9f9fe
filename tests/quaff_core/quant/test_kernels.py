"""int8_mm: exact against an int64 reference on every shape, including the CUDA edge shapes."""

from __future__ import annotations

import pytest
import torch

from quaff_core.quant.kernels import _cuda_padded_mm, cuda_second_operand, int8_mm
from tests.quaff_core.conftest import QUAFF_DEVICES

EDGE_SHAPES = [
    (1, 1, 1),
    (1, 7, 5),
    (3, 17, 9),
    (16, 8, 8),
    (17, 16, 24),
    (33, 24, 40),
    (5, 64, 13),
]


def rand_int8(*shape: int, device: str = "cpu") -> torch.Tensor:
    """Uniform int8 in [-127, 127]."""
    return torch.randint(-127, 128, shape, dtype=torch.int8, device=device)


@pytest.mark.parametrize("device", QUAFF_DEVICES)
@pytest.mark.parametrize(("m", "k", "n"), EDGE_SHAPES)
def test_int8_mm_exact(device: str, m: int, k: int, n: int) -> None:
    a = rand_int8(m, k, device=device)
    b = rand_int8(n, k, device=device)
    expected = (a.long() @ b.long().t()).to(torch.int32)
    out = int8_mm(a, b.t())  # transposed view: the layout QuaffLinear uses in forward
    assert out.dtype == torch.int32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(int8_mm(a, b.t().contiguous()), expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", QUAFF_DEVICES)
@pytest.mark.parametrize(("m", "k", "n"), [*EDGE_SHAPES, (64, 1040, 48)])
def test_fp32_backend_is_exact(device: str, m: int, k: int, n: int) -> None:
    # exact while K * 127^2 < 2^24: K = 1040 is the largest such width
    a = torch.full((m, k), -127, dtype=torch.int8, device=device)
    a[0] = rand_int8(k, device=device)
    b = rand_int8(n, k, device=device)
    expected = (a.long() @ b.long().t()).double()
    for second in (b.t(), b.t().contiguous()):
        out = int8_mm(a, second, "fp32")
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), expected, rtol=0, atol=0)


def test_cuda_second_operand_layouts() -> None:
    row_major = rand_int8(16, 24)
    col_major = rand_int8(24, 16).t()
    strided = rand_int8(16, 48)[:, ::2]
    # SM80+: both dense layouts pass through without a copy
    assert cuda_second_operand(row_major, (9, 0)) is row_major
    assert cuda_second_operand(col_major, (8, 0)) is col_major
    # older GPUs: only column-major; others are copied into it
    assert cuda_second_operand(col_major, (7, 5)) is col_major
    for b, cap in ((row_major, (7, 5)), (strided, (9, 0))):
        out = cuda_second_operand(b, cap)
        assert out.t().is_contiguous()
        torch.testing.assert_close(out, b, rtol=0, atol=0)


@pytest.mark.parametrize(("m", "k", "n"), EDGE_SHAPES)
def test_padding_path_is_exact(m: int, k: int, n: int) -> None:
    # the CUDA padding logic also runs on CPU's _int_mm, so it is tested everywhere
    a = rand_int8(m, k)
    b = rand_int8(k, n)
    out = _cuda_padded_mm(a, b)
    assert tuple(out.shape) == (m, n)
    torch.testing.assert_close(out, (a.long() @ b.long()).to(torch.int32), rtol=0, atol=0)


def test_int8_mm_empty() -> None:
    out = int8_mm(rand_int8(0, 8), rand_int8(8, 4))
    assert tuple(out.shape) == (0, 4)


def test_int8_mm_rejects_bad_operands() -> None:
    with pytest.raises(TypeError, match="int8"):
        int8_mm(torch.zeros(2, 2), rand_int8(2, 2))
    with pytest.raises(ValueError, match=r"\[M, K\]"):
        int8_mm(rand_int8(2, 3), rand_int8(2, 2))
