"""oneDNN's prepacked u8 x s8 GEMM: 7-bit weights on CPUs without VNNI, 8-bit with it.

Without AVX512-VNNI `torch._int_mm` is a scalar loop. oneDNN's quantized linear
(`onednn::qlinear_pointwise`, PyTorch's x86 quantization backend) multiplies uint8 activations
by int8 weights; on AVX2 CPUs without VNNI it uses pair sums, which saturate 16 bits unless one
operand loses a bit. The activations keep their 8 bits (the per-token levels -127..127 shifted
by `U8_ZERO` into uint8, `primitives.quantize_rows_u8`; oneDNN takes the shift back off as the
zero point) and the weights give one up: each layer's int8 weight is requantized once to the
levels -63..63 (2 x 255 x 63 < 2^15). 7-bit activations instead doubled the logits error of
SmolLM2 (`bench.activation_bits`). With unit scales the GEMM returns the exact integer sums (as
float32), which the usual dequantize pass scales, with the weight scales times `W7_RESCALE`.

With VNNI (AVX-VNNI, AVX512-VNNI) or AMX the products accumulate straight into int32, so there
the weights keep their 8 bits and the GEMM is exact ("onednn_s8"; its float32 result carries
float32 rounding from K ~ 1000 on, relative ~1e-7, as the "fp32" backend does); its prepacked
weight skips the reorder `torch._int_mm` pays on every call. The weight is prepacked twice:
W [N, K] for the forward and W^T [K, N] for the input gradient (only W^T for the "onednn_grad"
backend, whose forward runs the 8-bit weight dequantized; "onednn_s8" packs only the direction
that gains most where `torch._int_mm` can run the other, `plan.onednn_s8_packs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from quaff_core.quant.primitives import INT8_MAX, U8_ZERO

W7_MAX = 63.0
W7_RESCALE = INT8_MAX / W7_MAX  # a 7-bit level is worth this many int8 levels


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's quantized linear (x86 CPU builds do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")


def seven_bit(weight: torch.Tensor) -> torch.Tensor:
    """An int8 weight's levels requantized to -63..63 (times `W7_RESCALE` they approximate it)."""
    return torch.round(weight.float() / W7_RESCALE).clamp_(-W7_MAX, W7_MAX).to(torch.int8)


def _pack(w: torch.Tensor) -> torch.Tensor:
    """Prepack an int8 linear weight [N, K] (y = x w^T) for `u8_mm`."""
    packed: torch.Tensor = torch.ops.onednn.qlinear_prepack(w.contiguous(), None)
    return packed


@dataclass(frozen=True)
class OnednnPacks:
    """One layer's weight (7- or 8-bit levels) prepacked for y = x W^T and / or dX = dY W; a
    level is worth `rescale` int8 levels of the layer's weight."""

    weight: torch.Tensor | None  # Wq [N, K] packed as a linear weight: x @ Wq^T (or not packed)
    weight_t: torch.Tensor | None  # Wq^T [K, N] packed likewise: dY @ Wq (or not packed)
    out_features: int
    in_features: int
    ones: torch.Tensor  # unit weight scales, the longer of N and K
    zeros: torch.Tensor  # zero weight zero-points, likewise
    rescale: float  # W7_RESCALE for 7-bit levels, 1 for the layer's own 8-bit levels

    @classmethod
    def of(
        cls,
        weight: torch.Tensor,
        *,
        forward: bool = True,
        grad: bool = True,
        eight_bit: bool = False,
    ) -> OnednnPacks:
        """Pack an int8 weight [N, K] (any layout), requantized to 7 bits unless `eight_bit`
        (only for CPUs with VNNI or AMX): W for a `forward`, W^T for a `grad` through oneDNN."""
        n, k = weight.shape
        levels = weight if eight_bit else seven_bit(weight)
        width = max(n, k)
        return cls(
            weight=_pack(levels) if forward else None,
            weight_t=_pack(levels.t()) if grad else None,
            out_features=n,
            in_features=k,
            ones=torch.ones(width, dtype=torch.float32),
            zeros=torch.zeros(width, dtype=torch.int64),
            rescale=1.0 if eight_bit else W7_RESCALE,
        )

    def forward_mm(self, q: torch.Tensor) -> torch.Tensor:
        """q uint8 [M, K] (8-bit levels + U8_ZERO) @ Wq^T -> exact sums, float32 [M, N]."""
        if self.weight is None:
            raise ValueError("these packs hold only W^T (built with forward=False)")
        return u8_mm(q, self.weight, self.ones[: self.out_features], self.zeros)

    def grad_mm(self, q: torch.Tensor) -> torch.Tensor:
        """q uint8 [M, N] (8-bit levels + U8_ZERO) @ Wq -> exact sums, float32 [M, K]."""
        if self.weight_t is None:
            raise ValueError("these packs hold only W (built with grad=False)")
        return u8_mm(q, self.weight_t, self.ones[: self.in_features], self.zeros)


def u8_mm(
    q: torch.Tensor, packed: torch.Tensor, ones: torch.Tensor, zeros: torch.Tensor
) -> torch.Tensor:
    """(q - U8_ZERO) @ w^T of a packed int8 weight w [N, K]: q uint8 [M, K] -> float32 [M, N],
    the integer sums (exact below 2^24, i.e. K up to ~1000; float32 rounding beyond)."""
    out: torch.Tensor = torch.ops.onednn.qlinear_pointwise(
        q, 1.0, U8_ZERO, packed, ones, zeros[: ones.shape[0]], None, 1.0, 0,
        torch.float32, "none", [], "",
    )  # fmt: skip
    return out
