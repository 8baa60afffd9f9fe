"""LoRA from PEFT on top of `QuaffLinear`: a custom LoRA layer, its dispatch, and `add_lora`."""

from __future__ import annotations

from typing import Any, cast

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import LoraLayer
from torch import nn

from quaff_core.linear import QuaffLinear
from quaff_core.targets import LINEAR_TYPES, output_head_names


class QuaffLoraLinear(nn.Module, LoraLayer):
    """LoRA adapter (full precision) around a frozen `QuaffLinear` base layer."""

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: LoraConfig,
        r: int = 0,
        lora_alpha: int = 1,
        **kwargs: Any,
    ) -> None:
        """Build the adapter; DoRA and other weight-merging variants are not supported."""
        if config.use_dora:
            raise ValueError("QuaffLoraLinear does not support DoRA; set use_dora=False")
        if getattr(config, "velora_config", None) is not None:
            raise ValueError("QuaffLoraLinear does not support VeLoRA; set velora_config=None")
        super().__init__()
        LoraLayer.__init__(self, base_layer)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config)

    def _get_in_out_features(self, module: nn.Module) -> tuple[int, int] | tuple[None, None]:
        """(in_features, out_features) of the QuaffLinear base layer."""
        if isinstance(module, QuaffLinear):
            return module.in_features, module.out_features
        return super()._get_in_out_features(module)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """base(x) + sum of active adapters' B(A(dropout(x))) * scaling; x [..., K] -> [..., N]."""
        result: torch.Tensor = self.base_layer(x)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            lora_a = self.lora_A[name]
            lora_b = self.lora_B[name]
            convert = not torch.is_autocast_enabled(x.device.type)
            expected = result.dtype
            a_dtype = cast(torch.dtype, lora_a.weight.dtype)
            xa = self._cast_input_dtype(x, a_dtype) if convert else x
            out = lora_b(lora_a(self.lora_dropout[name](xa)))
            if convert:
                out = out.to(expected)
            result = result + out * self.scaling[name]
        return result

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Merging into an int8 base is not supported."""
        raise NotImplementedError("merging LoRA into a QuaffLinear int8 base is not supported")

    def unmerge(self) -> None:
        """Unmerging is not supported (nothing is ever merged)."""
        raise NotImplementedError("unmerging LoRA from a QuaffLinear base is not supported")

    def __repr__(self) -> str:
        """Like PEFT's LoRA layers: prefixed with `lora.`."""
        return "lora." + super().__repr__()


_TARGET_TYPES: tuple[type[nn.Module], ...] = (QuaffLinear, *LINEAR_TYPES)


def _all_linear_targets(model: nn.Module) -> list[str]:
    """Leaf names of every QuaffLinear / nn.Linear / Conv1D but the output head (suffix match)."""
    head = output_head_names(model)
    leaves: set[str] = set()
    other: set[str] = set()
    for name, module in model.named_modules():
        leaf = name.rpartition(".")[2]
        if isinstance(module, _TARGET_TYPES) and name not in head:
            leaves.add(leaf)
        elif name:
            other.add(leaf)
    if not leaves:
        raise ValueError("add_lora found no QuaffLinear, nn.Linear or Conv1D layers to adapt")
    if leaves & other:
        # an ambiguous suffix: fall back to full names
        return sorted(
            n for n, m in model.named_modules() if isinstance(m, _TARGET_TYPES) and n not in head
        )
    return sorted(leaves)


def add_lora(
    model: nn.Module,
    *,
    r: int = 16,
    alpha: float = 32.0,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
) -> PeftModel:
    """Wrap `model` in a PEFT LoRA model whose adapters sit on its QuaffLinear layers."""
    if r <= 0:
        raise ValueError(f"r must be positive, got {r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    targets = _all_linear_targets(model) if target_modules == "all-linear" else target_modules
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]  # PEFT types it int; scaling is alpha / r
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
    )
    config._register_custom_module({QuaffLinear: QuaffLoraLinear})
    peft_model = get_peft_model(model, config)
    return peft_model
