"""The int8 GEMM kernel: every `torch._int_mm` call in Quaff goes through `int8_mm`.

Rules of `torch._int_mm` (torch 2.4+):
- CPU: any shape; int8 x int8 -> int32. We still pass the second operand as given (a transposed
  view of a contiguous [K, N] buffer is the fast layout on CPU, see bench/PERF notes).
- CUDA: M > 16, K and N multiples of 8, and the second operand contiguous (row- or column-major
  both accepted by cuBLASLt, but we make it contiguous to be safe). We zero-pad to satisfy these,
  which leaves the product unchanged, and slice the result back.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

_CUDA_MIN_M = 17
_CUDA_MULTIPLE = 8


def _round_up(value: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= value."""
    return (value + multiple - 1) // multiple * multiple


def _cuda_padded_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`_int_mm` on CUDA with zero padding: a int8 [M, K], b int8 [K, N] -> int32 [M, N]."""
    m, k = a.shape
    n = b.shape[1]
    m_pad = max(_CUDA_MIN_M, _round_up(m, _CUDA_MULTIPLE))
    k_pad = _round_up(k, _CUDA_MULTIPLE)
    n_pad = _round_up(n, _CUDA_MULTIPLE)
    if (m_pad, k_pad) != (m, k):
        a = torch.nn.functional.pad(a, (0, k_pad - k, 0, m_pad - m))
    if (k_pad, n_pad) != (k, n):
        b = torch.nn.functional.pad(b, (0, n_pad - n, 0, k_pad - k))
    if not b.is_contiguous():
        b = b.contiguous()
    out = torch._int_mm(a.contiguous(), b)
    if (m_pad, n_pad) != (m, n):
        out = out[:m, :n]
    return out


def int8_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int8 GEMM: a int8 [M, K] @ b int8 [K, N] -> int32 [M, N], any shape, CPU or CUDA."""
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"int8_mm needs int8 operands, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"int8_mm needs [M, K] @ [K, N], got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"int8_mm operands on different devices: {a.device} and {b.device}")
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0 or k == 0:
        return torch.zeros(m, n, dtype=torch.int32, device=a.device)
    if a.device.type == "cuda":
        return _cuda_padded_mm(a, b)
    if a.device.type == "cpu":
        return torch._int_mm(a, b)
    # other backends: exact emulation through int32 (slow, but correct)
    logger.debug("int8_mm: no _int_mm on %s, emulating in int32", a.device)
    return a.to(torch.int32) @ b.to(torch.int32)
