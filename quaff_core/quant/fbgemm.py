"""fbgemm's int8 GEMM (PyTorch's x86 quantized backend) for CPUs without AVX512-VNNI.

On AVX2 and AVX-VNNI CPUs `torch._int_mm` is a scalar loop, while fbgemm's
`quantized::linear_dynamic` runs u8 x s8 with 7-bit activations (`reduce_range`, so the AVX2
pair-sums cannot saturate). It takes one activation scale per tensor; Quaff's per-token scales
come from normalising each row to max |x| = 1 first and multiplying the rows back afterwards,
so the 7-bit steps are per token. The weight is prepacked once per layer, twice: Q(W) [N, K] for
the forward and Q(W)^T [K, N] for the input gradient (fbgemm has no backward), both with scale 1
so that the packed integers are exactly the layer's int8 weight.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

_EPS = 1e-12


def fbgemm_available() -> bool:
    """Whether this torch build has fbgemm's quantized engine."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def _pack(q: torch.Tensor) -> Any:
    """Prepack an int8 [out, in] matrix as fbgemm's linear weight (scale 1, zero point 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated but are fbgemm's API
        qw = torch._make_per_tensor_quantized_tensor(q.contiguous(), 1.0, 0)
        return torch.ops.quantized.linear_prepack(qw, None)


@dataclass(frozen=True)
class FbgemmPacks:
    """The two prepacked copies of one layer's int8 weight: W for y = x W^T, W^T for dX = dY W."""

    weight: Any
    weight_t: Any

    @classmethod
    def of(cls, weight: torch.Tensor) -> FbgemmPacks:
        """Pack an int8 weight [N, K] (any layout)."""
        return cls(_pack(weight), _pack(weight.t()))


def normalize_rows(
    x: torch.Tensor, col_scale: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] * col_scale [K] with each row divided by its max |.|: (f32 [M, K], f32 [M, 1])."""
    xf = x.float()
    if col_scale is not None:
        xf = xf * col_scale
    row = xf.abs().amax(dim=1, keepdim=True).clamp_min(_EPS)
    return xf / row, row


def fbgemm_mm(x: torch.Tensor, packed: Any) -> torch.Tensor:
    """x f32 [M, K] (rows normalised) @ the packed int8 matrix^T -> f32 [M, N], through 7-bit
    per-tensor dynamic activations (`reduce_range`): exact integer sums, scaled back to float."""
    out: torch.Tensor = torch.ops.quantized.linear_dynamic(x, packed, True)
    return out
