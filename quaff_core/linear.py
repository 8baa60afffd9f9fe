"""`QuaffLinear`: a frozen int8 linear layer with high-precision outlier input channels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from quaff_core.autograd import quaff_linear
from quaff_core.outliers import normalise_layer_name
from quaff_core.quant import get_quant_ops, quantize_weight

_EPS = 1e-12


class QuaffLinear(nn.Module):
    """y = x W^T + b with W stored as int8 [N, K] + float32 scales [N] and outlier columns [N, n_o].

    All state lives in buffers: `weight` (int8 [N, K], stored as a transposed view of a
    contiguous [K, N] buffer, the fast `_int_mm` layout for forward and backward),
    `weight_scale` (float32 [N]),
    `outlier_idx` (int64 [n_o], sorted), `outlier_weight` (high precision [N, n_o]),
    `outlier_scale` (float32 [n_o], the momentum-smoothed s_o), `outlier_scale_initialized`
    (bool scalar) and `bias` ([N] or None). Nothing here is trainable.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        n_outliers: int = 0,
        momentum: float = 0.9,
        compute_dtype: torch.dtype | None = None,
        hp_dtype: torch.dtype = torch.float32,
        compile: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        """Allocate empty state; use `QuaffLinear.from_linear` to quantize an `nn.Linear`."""
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in/out features must be positive, got {in_features}, {out_features}")
        if not 0 <= n_outliers <= in_features:
            raise ValueError(f"n_outliers must be in [0, {in_features}], got {n_outliers}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if compute_dtype is not None and not compute_dtype.is_floating_point:
            raise TypeError(f"compute_dtype must be a floating dtype, got {compute_dtype}")
        self.in_features = in_features
        self.out_features = out_features
        self.momentum = momentum
        self.compute_dtype = compute_dtype
        self.compile = compile
        weight_t = torch.zeros(in_features, out_features, dtype=torch.int8, device=device)
        self.register_buffer("weight", weight_t.t())
        self.register_buffer("weight_scale", torch.ones(out_features, device=device))
        idx = torch.arange(n_outliers, dtype=torch.long, device=device)
        self.register_buffer("outlier_idx", idx)
        ow = torch.zeros(out_features, n_outliers, dtype=hp_dtype, device=device)
        self.register_buffer("outlier_weight", ow)
        self.register_buffer("outlier_scale", torch.ones(n_outliers, device=device))
        init = torch.zeros((), dtype=torch.bool, device=device)
        self.register_buffer("outlier_scale_initialized", init)
        b = torch.zeros(out_features, dtype=hp_dtype, device=device) if bias else None
        self.register_buffer("bias", b)

    weight: torch.Tensor
    weight_scale: torch.Tensor
    outlier_idx: torch.Tensor
    outlier_weight: torch.Tensor
    outlier_scale: torch.Tensor
    outlier_scale_initialized: torch.Tensor
    bias: torch.Tensor | None

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        outlier_channels: Sequence[int] = (),
        *,
        momentum: float = 0.9,
        compute_dtype: torch.dtype | None = None,
        compile: bool = False,
    ) -> QuaffLinear:
        """Quantize `linear` (weight [N, K]); keep columns W[:, outlier_channels] in its dtype."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        channels = sorted({int(c) for c in outlier_channels})
        if channels and (channels[0] < 0 or channels[-1] >= linear.in_features):
            raise ValueError(
                f"outlier channels must be in [0, {linear.in_features}), "
                f"got {channels[0]}..{channels[-1]}"
            )
        w = linear.weight.detach()
        module = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            n_outliers=len(channels),
            momentum=momentum,
            compute_dtype=compute_dtype,
            hp_dtype=w.dtype,
            compile=compile,
            device=w.device,
        )
        q, scale = quantize_weight(w)
        with torch.no_grad():
            module.weight.copy_(q)
            module.weight_scale.copy_(scale)
            idx = torch.tensor(channels, dtype=torch.long, device=w.device)
            module.outlier_idx.copy_(idx)
            module.outlier_weight.copy_(w.index_select(1, idx))
            if linear.bias is not None and module.bias is not None:
                module.bias.copy_(linear.bias.detach())
        return module

    @property
    def n_outliers(self) -> int:
        """Number of high-precision outlier input channels."""
        return int(self.outlier_idx.numel())

    @torch.no_grad()
    def _current_outlier_scale(self, x: torch.Tensor) -> torch.Tensor:
        """s_o = max(1, sqrt(max|X_o| / max|W_o|)), momentum-smoothed in training: float32 [n_o]."""
        x_max = x.index_select(1, self.outlier_idx).abs().amax(dim=0).float()
        w_max = self.outlier_weight.abs().amax(dim=0).float().clamp_min(_EPS)
        fresh = (x_max / w_max).sqrt().clamp_min(1.0)
        initialized = bool(self.outlier_scale_initialized)
        if not self.training:
            return self.outlier_scale.float() if initialized else fresh
        if initialized:
            self.outlier_scale.mul_(self.momentum).add_(fresh, alpha=1.0 - self.momentum)
        else:
            self.outlier_scale.copy_(fresh)
            self.outlier_scale_initialized.fill_(True)
        return self.outlier_scale.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., K] -> [..., N] in compute_dtype (x.dtype when compute_dtype is None)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected last dim {self.in_features}, got shape {tuple(x.shape)}")
        dtype = self.compute_dtype or x.dtype
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(dtype)
        if x2.shape[0] == 0:
            return x2.new_zeros(*lead, self.out_features)
        scale = self._current_outlier_scale(x2) if self.n_outliers else self.outlier_scale
        out = quaff_linear(
            x2,
            self.weight,
            self.weight_scale,
            self.outlier_idx,
            self.outlier_weight,
            scale,
            self.bias,
            get_quant_ops(self.compile),
        )
        return out.reshape(*lead, self.out_features)

    def dequantized_weight(self) -> torch.Tensor:
        """The weight the int8 GEMM sees, for inspection: float32 [N, K]."""
        return self.weight.float() * self.weight_scale[:, None].float()

    def extra_repr(self) -> str:
        """Shape, outliers, bias and compute dtype."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, n_outliers={self.n_outliers}, "
            f"compute_dtype={self.compute_dtype}, compile={self.compile}"
        )


def quaff_layers(model: nn.Module) -> dict[str, QuaffLinear]:
    """Every `QuaffLinear` in `model` (PEFT-wrapped or not), keyed by normalised module name."""
    layers: dict[str, QuaffLinear] = {}
    for name, module in model.named_modules():
        if isinstance(module, QuaffLinear):
            key = normalise_layer_name(name)
            # PEFT wraps the base layer as `<name>.base_layer`
            if key.endswith(".base_layer"):
                key = key[: -len(".base_layer")]
            layers[key] = module
    return layers
