"""`QuaffLinear`: a frozen int8 linear layer with high-precision outlier input channels."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from quaff_core.quant.autograd import quaff_linear
from quaff_core.quant.capabilities import (
    AUTO,
    INT8_BACKENDS,
    ONEDNN_FORWARD_BACKENDS,
    ONEDNN_GRAD_BACKENDS,
    BackendSetting,
    CompileSetting,
    DtypeSetting,
    Int8Backend,
    cpu_class,
    onednn_eight_bit_exact,
    resolve_compile,
    resolve_compute_dtype,
)
from quaff_core.quant.onednn import OnednnPacks
from quaff_core.quant.outlier_map import normalise_layer_name
from quaff_core.quant.plan import onednn_s8_packs, resolve_backend
from quaff_core.quant.primitives import get_quant_ops, quantize_weight
from quaff_core.quant.scale_state import check_scale_beta, current_token_mask, in_backward

logger = logging.getLogger(__name__)

_EPS = 1e-12
# the backends whose forward runs the int8 weight dequantized (no activation quantized)
DEQUANT_FORWARD = ("dequant", "onednn_grad")
DEFAULT_SCALE_BETA = 0.9


def _beta_from(scale_beta: float, momentum: float | None) -> float:
    """The EMA weight of the new statistic; `momentum` is the deprecated old-value weight."""
    if momentum is None:
        return check_scale_beta(scale_beta)
    warnings.warn(
        f"QuaffLinear momentum={momentum} is deprecated (it weights the old value): "
        f"use scale_beta={1.0 - momentum}",
        DeprecationWarning,
        stacklevel=3,
    )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    return 1.0 - momentum


class QuaffLinear(nn.Module):
    """y = x W^T + b with W stored as int8 [N, K] + float32 scales [N] and outlier columns [N, n_o].

    All state lives in buffers: `weight` (int8 [N, K], stored as a transposed view of a
    contiguous [K, N] buffer: one layout for forward and backward, see `kernels.py`),
    `weight_scale` (float32 [N]), `outlier_idx` (int64 [n_o], sorted), `outlier_weight` (high
    precision [N, n_o]), `outlier_scale` (float32 [n_o], the smoothed s_o),
    `outlier_scale_initialized` (bool scalar), `outlier_scale_skipped` (int64 scalar: training
    forwards whose statistic was non-finite or zero for some channel, which then kept its old
    value) and `bias` ([N] or None). Nothing here is trainable.

    The scale follows s = scale_beta * fresh + (1 - scale_beta) * s_old in training forwards
    (scale_beta in [0, 1]: 1 = no smoothing, 0 = keep the first value); eval forwards and the
    recomputation of gradient checkpointing never update it. `compute_dtype` and `compile`
    accept "auto" (see `quaff_core.quant.capabilities`), resolved on the first forward.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        n_outliers: int = 0,
        scale_beta: float = DEFAULT_SCALE_BETA,
        momentum: float | None = None,
        compute_dtype: DtypeSetting = AUTO,
        hp_dtype: torch.dtype = torch.float32,
        compile: CompileSetting = AUTO,
        device: torch.device | str | None = None,
        backend: BackendSetting = AUTO,
    ) -> None:
        """Allocate empty state; use `QuaffLinear.from_linear` to quantize an `nn.Linear`."""
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in/out features must be positive, got {in_features}, {out_features}")
        if not 0 <= n_outliers <= in_features:
            raise ValueError(f"n_outliers must be in [0, {in_features}], got {n_outliers}")
        if isinstance(compute_dtype, torch.dtype) and not compute_dtype.is_floating_point:
            raise TypeError(f"compute_dtype must be a floating dtype, got {compute_dtype}")
        if compute_dtype not in (None, AUTO) and not isinstance(compute_dtype, torch.dtype):
            raise TypeError(f"compute_dtype must be a dtype, None or 'auto', got {compute_dtype!r}")
        if compile not in (True, False, AUTO):
            raise ValueError(f"compile must be true, false or 'auto', got {compile!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.scale_beta = _beta_from(scale_beta, momentum)
        self.compute_dtype_setting = compute_dtype
        self.compile_setting = compile
        self.backend_setting = check_backend(backend)
        self._packs: tuple[tuple[int, int, bool], OnednnPacks] | None = None
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
        skipped = torch.zeros((), dtype=torch.int64, device=device)
        self.register_buffer("outlier_scale_skipped", skipped)
        b = torch.zeros(out_features, dtype=hp_dtype, device=device) if bias else None
        self.register_buffer("bias", b)

    # the buffers a training forward updates: a run's own; every other tensor is frozen
    RUN_STATE = ("outlier_scale", "outlier_scale_initialized", "outlier_scale_skipped")

    weight: torch.Tensor
    weight_scale: torch.Tensor
    outlier_idx: torch.Tensor
    outlier_weight: torch.Tensor
    outlier_scale: torch.Tensor
    outlier_scale_initialized: torch.Tensor
    outlier_scale_skipped: torch.Tensor
    bias: torch.Tensor | None

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        outlier_channels: Sequence[int] = (),
        *,
        scale_beta: float = DEFAULT_SCALE_BETA,
        momentum: float | None = None,
        compute_dtype: DtypeSetting = AUTO,
        compile: CompileSetting = AUTO,
        backend: BackendSetting = AUTO,
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
            scale_beta=_beta_from(scale_beta, momentum),
            compute_dtype=compute_dtype,
            hp_dtype=w.dtype,
            compile=compile,
            device=w.device,
            backend=backend,
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
    def compute_dtype(self) -> torch.dtype | None:
        """The compute dtype, 'auto' resolved for the weights' device (None = the input's)."""
        return resolve_compute_dtype(self.compute_dtype_setting, self.weight.device)

    @property
    def n_outliers(self) -> int:
        """Number of high-precision outlier input channels."""
        return int(self.outlier_idx.numel())

    @torch.no_grad()
    def _current_outlier_scale(self, x: torch.Tensor) -> torch.Tensor:
        """s_o = max(1, sqrt(max|X_o| / max|W_o|)) over non-pad tokens of x [M, K]: f32 [n_o].

        Training forwards blend it into `outlier_scale` on the device (no host sync); channels
        whose statistic is non-finite or zero keep their old value (counted in
        `outlier_scale_skipped`). Eval and checkpoint recomputation read the state only.
        """
        x_o = x.index_select(1, self.outlier_idx)
        mask = current_token_mask(x.shape[0], x.device)
        if mask is not None:
            x_o = x_o * mask[:, None].to(x_o.dtype)
        x_max = x_o.abs().amax(dim=0).float()
        w_max = self.outlier_weight.abs().amax(dim=0).float().clamp_min(_EPS)
        fresh = (x_max / w_max).sqrt().clamp_min(1.0)
        valid = torch.isfinite(x_max) & (x_max > 0)
        init = self.outlier_scale_initialized
        state = self.outlier_scale.float()
        if not self.training or in_backward():
            return torch.where(init, state, torch.where(valid, fresh, torch.ones_like(fresh)))
        beta = torch.where(init, self.scale_beta, 1.0)
        blended = beta * fresh + (1.0 - beta) * state
        self.outlier_scale.copy_(torch.where(valid, blended, state))
        self.outlier_scale_skipped.add_((~valid).any().to(torch.int64))
        self.outlier_scale_initialized.fill_(True)
        return self.outlier_scale.float()

    def resolved_settings(self, device: torch.device) -> tuple[torch.dtype | None, bool]:
        """(compute dtype or None = input dtype, compile) with 'auto' resolved for `device`."""
        return (
            resolve_compute_dtype(self.compute_dtype_setting, device),
            resolve_compile(self.compile_setting, device),
        )

    def backend_for(self, device: torch.device) -> Int8Backend:
        """The int8 backend this layer runs on `device` ("auto": the device's kernel choice for
        this layer's shape, `quaff_core.quant.plan.layer_backend`)."""
        return resolve_backend(self.backend_setting, self.in_features, self.out_features, device)

    def __getstate__(self) -> dict[str, Any]:
        """The module's state without the prepacked weights (a cache, rebuilt on first use; oneDNN's
        packed tensors have no storage to copy or pickle)."""
        state = dict(super().__getstate__())
        state["_packs"] = None
        return state

    def onednn_packs(
        self, forward: bool = True, grad: bool = True, eight_bit: bool = False
    ) -> OnednnPacks:
        """oneDNN's prepacked W for a `forward` and W^T for a `grad` through oneDNN (7-bit levels
        unless `eight_bit`), built on first use and again where the weight changes or a
        direction not packed yet is asked for (packs already there are kept)."""
        if eight_bit:
            check_eight_bit_onednn()
        key = (self.weight.data_ptr(), self.weight._version, eight_bit)
        if self._packs is not None and self._packs[0] == key:
            packs = self._packs[1]
            forward = forward or packs.weight is not None
            grad = grad or packs.weight_t is not None
            if (packs.weight is not None) == forward and (packs.weight_t is not None) == grad:
                return packs
        packs = OnednnPacks.of(self.weight, forward=forward, grad=grad, eight_bit=eight_bit)
        self._packs = (key, packs)
        return packs

    def _packs_for(self, backend: Int8Backend, needs_grad: bool) -> OnednnPacks | None:
        """The oneDNN packs a call on `backend` uses (None for the other backends): "onednn_s8"
        packs the directions of `plan.onednn_s8_packs` (the gradient's only when one is
        wanted), "onednn" both, "onednn_grad" W^T."""
        if backend not in ONEDNN_GRAD_BACKENDS:
            return None
        if backend == "onednn_s8":
            forward, grad = onednn_s8_packs(self.in_features, self.out_features)
            return self.onednn_packs(forward, grad and needs_grad, eight_bit=True)
        return self.onednn_packs(forward=backend in ONEDNN_FORWARD_BACKENDS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., K] -> [..., N]: computed in the compute dtype (x.dtype when it is None), returned
        in it under autocast (as autocast's linear would) and in x.dtype otherwise."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected last dim {self.in_features}, got shape {tuple(x.shape)}")
        compute_dtype, compile = self.resolved_settings(x.device)
        dtype = compute_dtype or x.dtype
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(dtype)
        if x2.shape[0] == 0:
            return x2.new_zeros(*lead, self.out_features)
        backend = self.backend_for(x.device)
        if backend == "onednn_grad" and not x2.requires_grad:
            backend = "dequant"  # the same forward; no input gradient, so no W^T pack to build
        if backend in DEQUANT_FORWARD and self.compile_setting == AUTO:
            compile = False  # the runtime's rule too (`training.runtime._resolve_compile`)
        # a dequantized forward computes the outlier columns exactly: no scale to follow
        use_scale = self.n_outliers and backend not in DEQUANT_FORWARD
        scale = self._current_outlier_scale(x2) if use_scale else self.outlier_scale
        out = quaff_linear(
            x2,
            self.weight,
            self.weight_scale,
            self.outlier_idx,
            self.outlier_weight,
            scale,
            self.bias,
            get_quant_ops(compile),
            backend,
            self._packs_for(backend, x2.requires_grad),
        )
        if out.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            out = out.to(x.dtype)
        return out.reshape(*lead, self.out_features)

    def dequantized_weight(self) -> torch.Tensor:
        """The weight the int8 GEMM sees, for inspection: float32 [N, K]."""
        return self.weight.float() * self.weight_scale[:, None].float()

    def extra_repr(self) -> str:
        """Shape, outliers, bias, scale_beta and compute settings."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, n_outliers={self.n_outliers}, "
            f"scale_beta={self.scale_beta}, compute_dtype={self.compute_dtype_setting}, "
            f"compile={self.compile_setting}, backend={self.backend_setting}"
        )


def check_eight_bit_onednn() -> None:
    """ValueError unless oneDNN's GEMM is exact with 8-bit weights on this CPU (VNNI or AMX)."""
    if not onednn_eight_bit_exact():
        raise ValueError(
            f"the onednn_s8 backend needs a CPU with VNNI or AMX (this one is {cpu_class()}): "
            "its 8-bit products would saturate; use 'auto' or 'onednn'"
        )


def check_backend(setting: BackendSetting) -> BackendSetting:
    """`setting` if it names an int8 backend or "auto", else ValueError."""
    if setting != AUTO and setting not in INT8_BACKENDS:
        raise ValueError(f"int8 backend must be 'auto' or one of {INT8_BACKENDS}, got {setting!r}")
    return setting


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
