"""The frozen output head's input gradient through the int8 GEMM (`Int8HeadGrad`).

At large vocabularies the head is the largest GEMM of a LoRA step: its input gradient
dlogits @ W ([tokens, V] x [V, H]; Qwen2.5: 151 936 x 896) costs as much as the forward logits.
LoRA leaves the head frozen (and tied to the embedding), so Quaff treats that product as it treats
a base projection's input gradient: W as int8 with per-row scales, dlogits diag(w_scale) quantized
per token, one int8 GEMM. The logits, and so the loss, stay in the compute dtype: only the gradient
carries int8 error. The chunked loss (`quaff_core.lm.loss`) finds it on the head
(`INPUT_GRAD_ATTR`) and uses it while the head's weight is frozen and unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from quaff_core.lm.loss import INPUT_GRAD_ATTR
from quaff_core.quant.autograd import quantized_input_grad
from quaff_core.quant.capabilities import (
    AUTO,
    BackendSetting,
    CompileSetting,
    Int8Backend,
    resolve_compile,
)
from quaff_core.quant.linear import check_eight_bit_onednn
from quaff_core.quant.onednn import OnednnPacks
from quaff_core.quant.plan import resolve_backend
from quaff_core.quant.primitives import get_quant_ops, quantize_weight, weight_scales

# the backends whose int8 GEMM takes 8-bit levels on both sides ("fp32": exact, for tests)
HEAD_BACKENDS: tuple[Int8Backend, ...] = ("int_mm", "onednn_s8", "fp32")


class Int8HeadGrad(nn.Module):
    """An int8 copy of a head's weight (buffers `weight` int8 [V, H], `weight_scale` f32 [V], not
    saved with the model) computing dlogits @ W through `backend`'s int8 GEMM; `compile_setting`
    picks the compiled quantize pass as `QuaffLinear`'s does. "onednn_s8" keeps oneDNN's W^T
    pack instead of the copy (`weight` is then empty): built on first use from `source`, the
    head's own weight, so a job copy, which drops the pack, shares the head and packs anew."""

    weight: torch.Tensor
    weight_scale: torch.Tensor
    source: torch.Tensor  # the head's weight [V, H] itself for "onednn_s8" (else empty)
    no_outliers: torch.Tensor  # f32 [V, 0]: the head keeps no outlier channel
    no_outlier_idx: torch.Tensor  # int64 [0]

    def __init__(
        self, head_weight: torch.Tensor, backend: Int8Backend, compile: CompileSetting = AUTO
    ) -> None:
        """Quantize `head_weight` [V, H] per row."""
        super().__init__()
        packed = backend == "onednn_s8"
        if packed:
            check_eight_bit_onednn()
        vocab, hidden = head_weight.shape
        device = head_weight.device
        none = torch.empty(0, hidden, dtype=torch.int8, device=device)
        if packed:  # the levels are made when the pack is, from the head's weight
            q, scale = none, weight_scales(head_weight)
        else:
            q, scale = quantize_weight(head_weight)
        self.register_buffer("weight", q, persistent=False)
        self.register_buffer("weight_scale", scale, persistent=False)
        self.register_buffer("source", head_weight if packed else none, persistent=False)
        self.backend: Int8Backend = backend
        self.compile_setting: CompileSetting = compile
        no_outliers = torch.empty(vocab, 0, dtype=torch.float32, device=device)
        self.register_buffer("no_outliers", no_outliers, persistent=False)
        no_idx = torch.empty(0, dtype=torch.long, device=device)
        self.register_buffer("no_outlier_idx", no_idx, persistent=False)
        self._made_from = (head_weight.data_ptr(), head_weight._version)
        self._packs: OnednnPacks | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The state without oneDNN's pack (no storage to copy or pickle; rebuilt on first use)."""
        state = dict(super().__getstate__())
        state["_packs"] = None
        return state

    def packs(self) -> OnednnPacks | None:
        """oneDNN's prepacked W^T for "onednn_s8" (None for the other backends)."""
        if self.backend != "onednn_s8":
            return None
        if self._packs is None:
            q, _ = quantize_weight(self.source)
            self._packs = OnednnPacks.of(q, forward=False, eight_bit=True)
        return self._packs

    def serves(self, weight: torch.Tensor) -> bool:
        """Whether `weight` is the frozen weight this copy was made from, unmodified since."""
        return not weight.requires_grad and (weight.data_ptr(), weight._version) == self._made_from

    def forward(self, grad_logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """grad_logits float32 [M, V] -> dlogits @ W [M, H] in `dtype`."""
        ops = get_quant_ops(resolve_compile(self.compile_setting, grad_logits.device))
        return quantized_input_grad(
            grad_logits, self.weight, self.weight_scale, self.no_outlier_idx, self.no_outliers,
            ops, self.backend, self.packs(), dtype,
        )  # fmt: skip


def head_backend(setting: BackendSetting, head_weight: torch.Tensor) -> Int8Backend | None:
    """The int8 backend the head's input gradient runs, or None where no 8-bit int8 GEMM pays
    (`auto`: the device's, when `plan.layer_backend` keeps it for a layer of the head's shape)."""
    vocab, hidden = head_weight.shape  # a linear layer of `hidden` inputs, `vocab` outputs
    backend = resolve_backend(setting, hidden, vocab, head_weight.device)
    return backend if backend in HEAD_BACKENDS else None


def attach_int8_head_grad(
    model: nn.Module, *, backend: BackendSetting = AUTO, compile: CompileSetting = AUTO
) -> Int8HeadGrad | None:
    """Give `model`'s linear output head an `Int8HeadGrad` where its backend has an 8-bit int8
    GEMM; returns it, or None (no plain linear head, or no such GEMM on its device)."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Linear):
        return None
    chosen = head_backend(backend, head.weight)
    if chosen is None:
        return None
    grad = Int8HeadGrad(head.weight.detach(), chosen, compile)
    setattr(head, INPUT_GRAD_ATTR, grad)
    return grad


def int8_head_grads(model: nn.Module) -> list[Int8HeadGrad]:
    """Every `Int8HeadGrad` in `model`."""
    return [m for m in model.modules() if isinstance(m, Int8HeadGrad)]
