"""Symmetric int8 quantize / dequantize passes around the int8 GEMM, eager or `torch.compile`d.

Eager, these element-wise passes cost more than the int8 GEMM itself on CPU; `get_quant_ops(True)`
returns the same functions compiled by inductor (vectorised C++ on CPU, Triton on CUDA), which
fuses each into one or two passes. Both variants compute the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

INT8_MAX = 127.0
_EPS = 1e-12


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel int8: weight float [N, K] -> (int8 [N, K], scale float32 [N])."""
    if weight.dim() != 2:
        raise ValueError(f"quantize_weight needs a 2-D weight, got shape {tuple(weight.shape)}")
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(_EPS) / INT8_MAX
    q = torch.round(w / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def quantize_rows(
    x: torch.Tensor, col_scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row int8 of x * col_scale (x [M, K], col_scale [K]) -> (int8 [M, K], f32 [M, 1])."""
    xf = x.float()
    if col_scale is not None:
        xf = xf * col_scale
    scale = xf.abs().amax(dim=1, keepdim=True).clamp_min(_EPS) / INT8_MAX
    q = torch.round(xf / scale).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize(
    acc: torch.Tensor,
    row_scale: torch.Tensor,
    col_scale: torch.Tensor | None,
    addend: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """acc int32 [M, N] * row_scale [M, 1] * col_scale [N] + addend [M, N] -> out_dtype [M, N]."""
    out = acc.float() * row_scale
    if col_scale is not None:
        out = out * col_scale
    if addend is not None:
        out = out + addend.float()
    return out.to(out_dtype)


@dataclass(frozen=True)
class QuantOps:
    """The quantize / dequantize pair used by the autograd function (eager or compiled)."""

    quantize_rows: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]
    dequantize: Callable[..., torch.Tensor]


_EAGER = QuantOps(quantize_rows=quantize_rows, dequantize=dequantize)
_compiled: QuantOps | None = None


def get_quant_ops(compile: bool) -> QuantOps:
    """Return eager ops, or inductor-compiled ops (compiled once per process, dynamic shapes)."""
    global _compiled
    if not compile:
        return _EAGER
    if _compiled is None:
        logger.info("compiling Quaff quantize/dequantize with torch.compile (dynamic shapes)")
        _compiled = QuantOps(
            quantize_rows=torch.compile(quantize_rows, dynamic=True),
            dequantize=torch.compile(dequantize, dynamic=True),
        )
    return _compiled
