"""The int8 GEMM kernel: every int8 matrix product in Quaff goes through `int8_mm`.

Backends (chosen per device by `quaff_core.quant.capabilities.int8_backend`):
- "int_mm": `torch._int_mm`, int8 x int8 -> int32. On CPU it is fast only with VNNI/AMX (oneDNN);
  without them it is a scalar loop, ~50-100x slower than a float32 GEMM.
- "fp32": the same integer products through a float32 GEMM: exact while K * 127^2 < 2^24
  (K <= 1040), else within float32 rounding (relative 6e-8), returned as float32.

Rules of `torch._int_mm` on CUDA (cuBLASLt, CUDA >= 11.7), all kept here:
- M > 16, K and N multiples of 8: we zero-pad (which leaves the product unchanged) and slice back;
  real model widths are multiples of 8, so only the M padding of very short inputs ever runs.
- the first operand row-major (our quantized activations and gradients always are);
- the second operand row-major or column-major on SM80+ (both layouts `QuaffLinear` uses, with no
  copy); on older GPUs only column-major, so there (only) a row-major one is copied per call.
"""

from __future__ import annotations

import logging

import torch

from quaff_core.quant.capabilities import Int8Backend

logger = logging.getLogger(__name__)

CUDA_MIN_M = 17
CUDA_MULTIPLE = 8
_SM80 = (8, 0)


def _round_up(value: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= value."""
    return (value + multiple - 1) // multiple * multiple


def _is_strided_2d(t: torch.Tensor) -> bool:
    """Row-major or column-major dense 2-D tensor (no copy needed by cuBLASLt)."""
    return t.is_contiguous() or t.t().is_contiguous()


def cuda_second_operand(b: torch.Tensor, capability: tuple[int, int]) -> torch.Tensor:
    """`b` int8 [K, N] in a layout cuBLASLt's int8 GEMM accepts on this GPU (a copy only if not)."""
    if capability >= _SM80 and _is_strided_2d(b):
        return b
    if b.t().is_contiguous():  # column-major: accepted everywhere
        return b
    return b.t().contiguous().t()


def _cuda_padded_mm(
    a: torch.Tensor, b: torch.Tensor, capability: tuple[int, int] = _SM80
) -> torch.Tensor:
    """`_int_mm` under the CUDA rules: a int8 [M, K], b int8 [K, N] -> int32 [M, N]."""
    m, k = a.shape
    n = b.shape[1]
    m_pad = max(m, CUDA_MIN_M)
    k_pad = _round_up(k, CUDA_MULTIPLE)
    n_pad = _round_up(n, CUDA_MULTIPLE)
    if (m_pad, k_pad) != (m, k) or not a.is_contiguous():
        a = torch.nn.functional.pad(a, (0, k_pad - k, 0, m_pad - m)).contiguous()
    if (k_pad, n_pad) != (k, n):
        b = torch.nn.functional.pad(b, (0, n_pad - n, 0, k_pad - k))
    out = torch._int_mm(a, cuda_second_operand(b, capability))
    if (m_pad, n_pad) != (m, n):
        out = out[:m, :n]
    return out


def _check_operands(a: torch.Tensor, b: torch.Tensor) -> None:
    """TypeError/ValueError unless a int8 [M, K] and b int8 [K, N] on one device."""
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"int8_mm needs int8 operands, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"int8_mm needs [M, K] @ [K, N], got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"int8_mm operands on different devices: {a.device} and {b.device}")


def int8_mm(a: torch.Tensor, b: torch.Tensor, backend: Int8Backend = "int_mm") -> torch.Tensor:
    """Exact int8 GEMM: a int8 [M, K] @ b int8 [K, N] -> [M, N] sums, int32 ("int_mm") or
    float32 ("fp32" backend, see the module docstring); any shape, any layout of b."""
    _check_operands(a, b)
    m, k = a.shape
    n = b.shape[1]
    if backend == "fp32":
        return torch.mm(a.float(), b.float())
    if m == 0 or n == 0 or k == 0:
        return torch.zeros(m, n, dtype=torch.int32, device=a.device)
    if a.device.type == "cuda":
        return _cuda_padded_mm(a, b, torch.cuda.get_device_capability(a.device))
    if a.device.type == "cpu":
        return torch._int_mm(a, b)
    # other backends: exact emulation through int32 (slow, but correct)
    logger.debug("int8_mm: no _int_mm on %s, emulating in int32", a.device)
    return a.to(torch.int32) @ b.to(torch.int32)
