"""Which modules Quaff quantizes: linear projections (`nn.Linear`, GPT-2's `Conv1D`) but the head.

PEFT adapter modules (the `lora_A` / `lora_B` linears inside a `BaseTunerLayer`) are never
targets; the base layer a tuner layer wraps is, under the name of the module it replaced.
"""

from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from quaff_core.quant.linear import QuaffLinear

LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, Conv1D)


def output_head_names(model: nn.Module) -> set[str]:
    """Module names of the output head (`get_output_embeddings`), which Quaff never quantizes."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if head is None:
        return set()
    return {name for name, module in model.named_modules() if module is head}


def adapter_module_ids(model: nn.Module) -> set[int]:
    """ids of the modules PEFT added inside its tuner layers (everything but their base layers)."""
    ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            base = {id(m) for m in module.get_base_layer().modules()}
            ids.update(id(m) for m in module.modules() if m is not module and id(m) not in base)
    return ids


def quantizable_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Every `nn.Linear` / `Conv1D` except the output head and PEFT adapters, by module name."""
    skip = output_head_names(model)
    adapters = adapter_module_ids(model)
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, LINEAR_TYPES) and name not in skip and id(module) not in adapters
    }


def in_features(module: nn.Module) -> int:
    """Input width K of a linear target (`nn.Linear`, `Conv1D` or `QuaffLinear`)."""
    if isinstance(module, Conv1D):
        return int(module.nx)
    if isinstance(module, nn.Linear | QuaffLinear):
        return int(module.in_features)
    raise TypeError(f"not a linear layer: {type(module).__name__}")


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The weight as `nn.Linear` lays it out, [N, K] (a transposed view for `Conv1D`)."""
    if isinstance(module, Conv1D):
        return module.weight.detach().t()
    if isinstance(module, QuaffLinear):
        return module.dequantized_weight()
    if isinstance(module, nn.Linear):
        return module.weight.detach()
    raise TypeError(f"not a linear layer: {type(module).__name__}")


def as_linear(module: nn.Module) -> nn.Linear:
    """`module` itself if an `nn.Linear`; a `Conv1D` as an `nn.Linear` sharing its storage."""
    if isinstance(module, nn.Linear):
        return module
    if not isinstance(module, Conv1D):
        raise TypeError(f"cannot quantize {type(module).__name__}: not nn.Linear or Conv1D")
    weight = module.weight
    linear = nn.Linear(int(module.nx), int(module.nf), bias=module.bias is not None, device="meta")
    linear.weight = nn.Parameter(weight.detach().t(), requires_grad=False)
    if module.bias is not None:
        linear.bias = nn.Parameter(module.bias.detach(), requires_grad=False)
    return linear.train(module.training)
