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

from quaff_core.lm.scratch import scratch_buffer

logger = logging.getLogger(__name__)

INT8_MAX = 127.0
# oneDNN's uint8 activations (CPUs without VNNI): the int8 levels -127..127 shifted into 1..255
U8_ZERO = 128
_EPS = 1e-12


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """The per-output-channel int8 scales of a weight float [N, K]: float32 [N]."""
    if weight.dim() != 2:
        raise ValueError(f"quantize_weight needs a 2-D weight, got shape {tuple(weight.shape)}")
    return weight.detach().abs().amax(dim=1).float().clamp_min(_EPS) / INT8_MAX


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel int8: weight float [N, K] -> (int8 [N, K], scale float32 [N])."""
    scale = weight_scales(weight)
    w = weight.detach().float()
    q = torch.round(w / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def _scaled_float(x: torch.Tensor, col_scale: torch.Tensor | None) -> torch.Tensor:
    """x * col_scale as a float32 [M, K] that may be worked in place: eager, in this thread's
    "row levels" scratch buffer (valid until its next use); compiled, a fresh tensor."""
    if torch.compiler.is_compiling():
        return x.float() * col_scale if col_scale is not None else x.float().clone()
    out = scratch_buffer(x.shape, torch.float32, x.device, "row levels")
    if col_scale is None:
        return out.copy_(x)
    return torch.mul(x, col_scale, out=out)


def _row_levels(
    x: torch.Tensor, col_scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row int8 levels of x * col_scale (x [M, K], col_scale [K]), still float: (f32
    [M, K] of levels in -127..127, valid until the next call, f32 scale [M, 1]). One [M, K]
    temporary, worked in place: eager, every fresh temporary of a large layer costs its page
    faults."""
    xf = _scaled_float(x, col_scale)
    scale = torch.linalg.vector_norm(xf, float("inf"), dim=1, keepdim=True)
    scale = scale.clamp_min(_EPS) / INT8_MAX
    return xf.div_(scale).round_().clamp_(-INT8_MAX, INT8_MAX), scale


def quantize_rows(
    x: torch.Tensor, col_scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row int8 of x * col_scale (x [M, K], col_scale [K]) -> (int8 [M, K], f32 [M, 1])."""
    levels, scale = _row_levels(x, col_scale)
    return levels.to(torch.int8), scale


def quantize_rows_u8(
    x: torch.Tensor, col_scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_rows` with the levels shifted into uint8: (level + U8_ZERO [M, K], f32 [M, 1]);
    the integer product with an int8 matrix is (u - U8_ZERO) @ W, scaled back by the row scale."""
    levels, scale = _row_levels(x, col_scale)
    return levels.add_(U8_ZERO).to(torch.uint8), scale


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


# One top-level function per call site: torch.compile caches (and limits recompiles) per code
# object, so forward/backward variants must not share one.


def quantize_activation(
    x: torch.Tensor, col_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: per-token int8 of x [M, K] * col_scale [K] (1 / s_o on outliers)."""
    return quantize_rows(x, col_scale)


def quantize_grad(
    grad: torch.Tensor, col_scale: torch.Tensor, outlier_weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward: int8 rows of grad_out [M, N] * w_scale [N]; grad_out @ W_o (f32 [M, n_o]).

    The outlier columns' product runs in grad_out's dtype (bf16 compute: a bf16 GEMM accumulating
    in float32, as autocast would; 4x faster on CPU than upcasting the whole [M, N] gradient)."""
    q, scale = quantize_rows(grad, col_scale)
    return q, scale, _outlier_grad(grad, outlier_weight)


def quantize_activation_u8(
    x: torch.Tensor, col_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, uint8: `quantize_rows_u8` of x [M, K] * col_scale [K]."""
    return quantize_rows_u8(x, col_scale)


def quantize_grad_u8(
    grad: torch.Tensor, col_scale: torch.Tensor, outlier_weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward, uint8: `quantize_grad` with `quantize_rows_u8`."""
    q, scale = quantize_rows_u8(grad, col_scale)
    return q, scale, _outlier_grad(grad, outlier_weight)


def _outlier_grad(grad: torch.Tensor, outlier_weight: torch.Tensor) -> torch.Tensor:
    """grad_out [M, N] @ W_o [N, n_o] -> f32 [M, n_o], in grad_out's dtype (a bf16 GEMM
    accumulating in float32 under bf16 compute)."""
    return torch.mm(grad, outlier_weight.to(grad.dtype)).float()


def scale_output(
    acc: torch.Tensor, row_scale: torch.Tensor, col_scale: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Forward: acc [M, N] (int32 sums, or their float32 values) * row_scale [M, 1] * col_scale
    [N] + bias [N] -> a new float32 [M, N]."""
    out = acc.float() * row_scale * col_scale
    if bias is not None:
        out = out + bias.float()
    return out


def add_outlier_correction(
    out: torch.Tensor, x_o: torch.Tensor, w_corr: torch.Tensor, out_dtype: torch.dtype
) -> torch.Tensor:
    """out f32 [M, N] += x_o [M, n_o] @ w_corr^T ([N, n_o]) in place, a rank-n_o update that
    neither copies `out` nor runs when n_o = 0; returned in out_dtype."""
    if x_o.shape[1] > 0:
        out.addmm_(x_o.float(), w_corr.float().t())
    return out.to(out_dtype)


def dequantize_grad(
    acc: torch.Tensor, row_scale: torch.Tensor, out_dtype: torch.dtype
) -> torch.Tensor:
    """Backward: acc int32 [M, K] * row_scale [M, 1] -> grad_x in out_dtype."""
    return dequantize(acc, row_scale, None, None, out_dtype)


@dataclass(frozen=True)
class QuantOps:
    """The quantize / dequantize passes used by the autograd function (eager or compiled)."""

    quantize_activation: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    quantize_grad: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ]
    scale_output: Callable[..., torch.Tensor]
    dequantize_grad: Callable[[torch.Tensor, torch.Tensor, torch.dtype], torch.Tensor]
    quantize_activation_u8: Callable[
        [torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
    ]
    quantize_grad_u8: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ]

    def dequantize_output(
        self,
        acc: torch.Tensor,
        row_scale: torch.Tensor,
        col_scale: torch.Tensor,
        x_o: torch.Tensor,
        w_corr: torch.Tensor,
        bias: torch.Tensor | None,
        out_dtype: torch.dtype,
    ) -> torch.Tensor:
        """Forward: acc [M, N] * row_scale [M, 1] * col_scale [N] + x_o [M, n_o] @ w_corr^T
        ([N, n_o], the outlier correction) + bias [N] -> out_dtype [M, N]: one scaling pass
        (`scale_output`, compiled where the ops are) and an in-place rank-n_o update."""
        out = self.scale_output(acc, row_scale, col_scale, bias)
        return add_outlier_correction(out, x_o, w_corr, out_dtype)


_EAGER = QuantOps(
    quantize_activation,
    quantize_grad,
    scale_output,
    dequantize_grad,
    quantize_activation_u8,
    quantize_grad_u8,
)
_compiled: QuantOps | None = None
_RECOMPILE_LIMIT = 64


def get_quant_ops(compile: bool) -> QuantOps:
    """Return eager ops, or inductor-compiled ops (compiled once per process, dynamic shapes)."""
    global _compiled
    if not compile:
        return _EAGER
    if _compiled is None:
        logger.info("compiling Quaff quantize/dequantize with torch.compile (dynamic shapes)")
        # variants: compute dtype x n_o in {0, 1, >= 2} (dynamo specialises sizes 0 and 1) x
        # bias; the default limit of 8 would silently fall back to eager for some layers
        limit = max(int(torch._dynamo.config.recompile_limit), _RECOMPILE_LIMIT)
        torch._dynamo.config.recompile_limit = limit
        _compiled = QuantOps(
            torch.compile(quantize_activation, dynamic=True),
            torch.compile(quantize_grad, dynamic=True),
            torch.compile(scale_output, dynamic=True),
            torch.compile(dequantize_grad, dynamic=True),
            torch.compile(quantize_activation_u8, dynamic=True),
            torch.compile(quantize_grad_u8, dynamic=True),
        )
    return _compiled
