"""Private autograd function of `QuaffLinear`: int8 forward and int8 input-gradient backward."""

from __future__ import annotations

from typing import Any

import torch

from quaff_core.lm.scratch import scratch_buffer
from quaff_core.quant.capabilities import ONEDNN_FORWARD_BACKENDS, ONEDNN_GRAD_BACKENDS, Int8Backend
from quaff_core.quant.kernels import int8_mm
from quaff_core.quant.onednn import OnednnPacks
from quaff_core.quant.primitives import QuantOps


def _packed(backend: Int8Backend, packs: OnednnPacks | None, which: str) -> OnednnPacks | None:
    """`packs` where this direction (`which`: "weight" forward, "weight_t" input gradient) runs
    oneDNN's prepacked GEMM on `backend`, else None."""
    if packs is None or getattr(packs, which) is None:
        return None
    runs = backend in (ONEDNN_FORWARD_BACKENDS if which == "weight" else ONEDNN_GRAD_BACKENDS)
    return packs if runs else None


def _unpacked_backend(backend: Int8Backend) -> Int8Backend:
    """The int8 GEMM of a direction that has no pack: "onednn_s8" runs `torch._int_mm` there."""
    return "int_mm" if backend == "onednn_s8" else backend


def _inverse_channel_scale(
    in_features: int, outlier_idx: torch.Tensor, outlier_scale: torch.Tensor
) -> torch.Tensor:
    """float32 [K]: 1 everywhere except 1 / s_o on the outlier input channels."""
    inv = torch.ones(in_features, dtype=torch.float32, device=outlier_scale.device)
    return inv.index_copy_(0, outlier_idx, outlier_scale.float().reciprocal())


class _QuaffLinearFn(torch.autograd.Function):
    """y = Q(X / s) Q(W)^T + (X_o / s_o) ((s_o - 1) W_o)^T + b; dX = Q(dY diag(w_scale)) Q(W)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_scale: torch.Tensor,
        outlier_idx: torch.Tensor,
        outlier_weight: torch.Tensor,
        outlier_scale: torch.Tensor,
        bias: torch.Tensor | None,
        ops: QuantOps,
        backend: Int8Backend,
        packs: OnednnPacks | None,
    ) -> torch.Tensor:
        """x [M, K] compute dtype, weight int8 [N, K] (a view of a contiguous [K, N]) -> [M, N]."""
        ctx.backend = backend
        ctx.packs = packs
        with torch.autocast(x.device.type, enabled=False):
            return _QuaffLinearFn._forward(
                ctx, x, weight, weight_scale, outlier_idx, outlier_weight, outlier_scale, bias, ops
            )

    @staticmethod
    def _forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_scale: torch.Tensor,
        outlier_idx: torch.Tensor,
        outlier_weight: torch.Tensor,
        outlier_scale: torch.Tensor,
        bias: torch.Tensor | None,
        ops: QuantOps,
    ) -> torch.Tensor:
        """Forward body, run with autocast off (dtypes here are chosen explicitly)."""
        in_features = x.shape[1]
        col_scale = torch.ones(in_features, dtype=torch.float32, device=x.device)
        # the correction carries most of the outliers' output: kept in float32, fused into
        # the dequantize pass as a rank-n_o update (n_o = 0 makes it vanish)
        s = outlier_scale.float()
        x_o = x.index_select(1, outlier_idx).float() / s
        w_corr = outlier_weight.float() * (s - 1)
        if outlier_idx.numel() > 0:
            col_scale = _inverse_channel_scale(in_features, outlier_idx, outlier_scale)
        w_scale = weight_scale.float()
        packed = _packed(ctx.backend, ctx.packs, "weight")
        if packed is not None:
            q, row_scale = ops.quantize_activation_u8(x.contiguous(), col_scale)
            acc = packed.forward_mm(q)
            w_scale = w_scale * packed.rescale  # 7-bit levels are worth more
        else:
            q, row_scale = ops.quantize_activation(x.contiguous(), col_scale)
            acc = int8_mm(q, weight.t(), _unpacked_backend(ctx.backend))
        out = ops.dequantize_output(acc, row_scale, w_scale, x_o, w_corr, bias, x.dtype)
        ctx.save_for_backward(weight, weight_scale, outlier_idx, outlier_weight)
        ctx.ops = ops
        ctx.x_dtype = x.dtype
        return out

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """grad_out [M, N] -> grad_x [M, K] via an int8 GEMM; exact for the outlier channels."""
        (grad_out,) = grad_outputs
        grad_x = None
        if ctx.needs_input_grad[0]:
            with torch.autocast(grad_out.device.type, enabled=False):
                grad_x = _QuaffLinearFn._backward(ctx, grad_out)
        return grad_x, None, None, None, None, None, None, None, None, None

    @staticmethod
    def _backward(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
        """Backward body for the input gradient, run with autocast off."""
        weight, weight_scale, outlier_idx, outlier_weight = ctx.saved_tensors
        return quantized_input_grad(
            grad_out, weight, weight_scale, outlier_idx, outlier_weight, ctx.ops, ctx.backend,
            ctx.packs, ctx.x_dtype,
        )  # fmt: skip


def quantized_input_grad(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    outlier_idx: torch.Tensor,
    outlier_weight: torch.Tensor,
    ops: QuantOps,
    backend: Int8Backend,
    packs: OnednnPacks | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """dX = Q(dY diag(w_scale)) Q(W) [M, K] in `dtype` from grad_out [M, N] through the int8
    GEMM of `backend` (oneDNN's W^T pack for the `ONEDNN_GRAD_BACKENDS`); the outlier channels
    take their exact gradient from the high-precision columns."""
    # w_scale lies on the reduction dim of dY @ W, so fold it into dY before quantizing
    if backend in ONEDNN_GRAD_BACKENDS and packs is None:
        raise ValueError(f"the {backend} backend needs the layer's prepacked weights")
    packed = _packed(backend, packs, "weight_t")
    if packed is not None:
        gq, g_scale, exact = ops.quantize_grad_u8(
            grad_out.contiguous(), weight_scale.float() * packed.rescale, outlier_weight
        )
        acc = packed.grad_mm(gq)
    else:
        gq, g_scale, exact = ops.quantize_grad(
            grad_out.contiguous(), weight_scale.float(), outlier_weight
        )
        acc = int8_mm(gq, weight, _unpacked_backend(backend))
    grad_x = ops.dequantize_grad(acc, g_scale, dtype)
    if outlier_idx.numel() > 0:
        grad_x.index_copy_(1, outlier_idx, exact.to(grad_x.dtype))
    return grad_x


def quaff_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    outlier_idx: torch.Tensor,
    outlier_weight: torch.Tensor,
    outlier_scale: torch.Tensor,
    bias: torch.Tensor | None,
    ops: QuantOps,
    backend: Int8Backend = "int_mm",
    packs: OnednnPacks | None = None,
) -> torch.Tensor:
    """Functional entry point: x [M, K] -> [M, N] in x.dtype (see `_QuaffLinearFn`); the
    `ONEDNN_GRAD_BACKENDS` need the layer's `packs`; "dequant" and "onednn_grad" go through
    `dequant_linear`."""
    if backend == "dequant":
        return dequant_linear(x, weight, weight_scale, outlier_idx, outlier_weight, bias)
    if backend in ONEDNN_GRAD_BACKENDS and packs is None:
        raise ValueError(f"the {backend} backend needs the layer's prepacked weights")
    if backend == "onednn_grad" and packs is not None:
        return dequant_linear(
            x, weight, weight_scale, outlier_idx, outlier_weight, bias, (ops, packs)
        )
    out = _QuaffLinearFn.apply(
        x, weight, weight_scale, outlier_idx, outlier_weight, outlier_scale, bias, ops, backend,
        packs,
    )  # fmt: skip
    return out


def dequantized_weight_t(
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    outlier_idx: torch.Tensor,
    outlier_weight: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """W^T [K, N] in `dtype`: the int8 weight times its scales, outlier rows exact; written into
    this thread's scratch buffer (`lm.scratch.scratch_buffer`, valid until the next call)."""
    w_t = scratch_buffer(weight.t().shape, dtype, weight.device, "dequantized weight")
    torch.mul(weight.t(), weight_scale.to(dtype), out=w_t)  # one pass: int8 promotes to dtype
    if outlier_idx.numel() > 0:
        w_t.index_copy_(0, outlier_idx, outlier_weight.t().to(dtype))
    return w_t


class _DequantLinearFn(torch.autograd.Function):
    """y = x W^T + b with W dequantized from int8 per call: the speed of a `dtype` GEMM, the
    memory of the int8 weight (no dequantized copy is kept for backward). The input gradient
    dequantizes W again, or, given `int8_grad` (ops, packs), runs oneDNN's int8 GEMM
    (`quantized_input_grad`): the "onednn_grad" backend."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_scale: torch.Tensor,
        outlier_idx: torch.Tensor,
        outlier_weight: torch.Tensor,
        bias: torch.Tensor | None,
        int8_grad: tuple[QuantOps, OnednnPacks] | None,
    ) -> torch.Tensor:
        """x [M, K] in the compute dtype -> [M, N] in it."""
        ctx.save_for_backward(weight, weight_scale, outlier_idx, outlier_weight)
        ctx.int8_grad = int8_grad
        with torch.autocast(x.device.type, enabled=False):
            w_t = dequantized_weight_t(weight, weight_scale, outlier_idx, outlier_weight, x.dtype)
            if bias is None:
                return torch.mm(x, w_t)
            return torch.addmm(bias.to(x.dtype), x, w_t)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """grad_out [M, N] -> grad_x [M, K] = grad_out W: W dequantized again, or int8."""
        (grad_out,) = grad_outputs
        grad_x = None
        if ctx.needs_input_grad[0]:
            weight, weight_scale, outlier_idx, outlier_weight = ctx.saved_tensors
            with torch.autocast(grad_out.device.type, enabled=False):
                if ctx.int8_grad is None:
                    w_t = dequantized_weight_t(
                        weight, weight_scale, outlier_idx, outlier_weight, grad_out.dtype
                    )
                    grad_x = torch.mm(grad_out, w_t.t())
                else:
                    ops, packs = ctx.int8_grad
                    grad_x = quantized_input_grad(
                        grad_out, weight, weight_scale, outlier_idx, outlier_weight, ops,
                        "onednn_grad", packs, grad_out.dtype,
                    )  # fmt: skip
        return grad_x, None, None, None, None, None, None


def dequant_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    outlier_idx: torch.Tensor,
    outlier_weight: torch.Tensor,
    bias: torch.Tensor | None,
    int8_grad: tuple[QuantOps, OnednnPacks] | None = None,
) -> torch.Tensor:
    """The "dequant" backend: x [M, K] -> [M, N] through a GEMM in x.dtype (with `int8_grad`,
    the "onednn_grad" backend: the input gradient through oneDNN's int8 GEMM)."""
    out: torch.Tensor = _DequantLinearFn.apply(
        x, weight, weight_scale, outlier_idx, outlier_weight, bias, int8_grad
    )
    return out
