"""PEFT adapters on top of `QuaffLinear`: LoRA and IA3 layers for the int8 base, `add_adapter`.

LoRA (with rsLoRA) and IA3 wrap each QuaffLinear in a PEFT tuner layer; prefix tuning, prompt
tuning and p-tuning learn virtual tokens and leave the layers alone. The saved adapters are
plain PEFT adapters: they load with `PeftModel.from_pretrained` on the unquantized base.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from peft import (
    IA3Config,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)
from peft.tuners.ia3.layer import IA3Layer
from peft.tuners.lora.layer import LoraLayer
from torch import nn

from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.targets import LINEAR_TYPES, output_head_names

# IA3 scales the input of these layers (the MLP's down projection), the output of the others
FEEDFORWARD_LEAVES = ("down_proj", "fc2", "c_proj", "dense_4h_to_h", "w2")


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
        """Build the adapter (rsLoRA scaling from `config`); DoRA and VeLoRA are refused."""
        if config.use_dora:
            raise ValueError(
                "DoRA needs the base weight in full precision, which an int8 QuaffLinear does not "
                "keep; use an unquantized base or use_dora=False"
            )
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


class QuaffIA3Linear(nn.Module, IA3Layer):
    """IA3 around a frozen `QuaffLinear`: a learned vector scales its input (feed-forward
    layers, [K]) or its output ([N]); the input scaling happens before the int8 quantize pass."""

    def __init__(self, base_layer: QuaffLinear, *, is_feedforward: bool) -> None:
        """Wrap `base_layer` without an adapter; PEFT's IA3 injection adds them."""
        super().__init__()
        # IA3Layer.__init__ accepts only nn.Linear-like bases: set its state here instead
        self.base_layer = base_layer
        self.ia3_l = nn.ParameterDict({})
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.is_feedforward = is_feedforward
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.fan_in_fan_out = False

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """x [..., K] -> [..., N]: base(x * l) for feed-forward layers, base(x) * l otherwise."""
        if self.disable_adapters:
            return self.base_layer(x)
        scaling: torch.Tensor | None = None
        for name in self.active_adapters:
            if name in self.ia3_l:
                vector = self.ia3_l[name].flatten()
                scaling = vector if scaling is None else scaling * vector
        if scaling is None:
            return self.base_layer(x)
        if self.is_feedforward:
            return self.base_layer((x * scaling).to(x.dtype))
        result: torch.Tensor = self.base_layer(x)
        return (result * scaling).to(result.dtype)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Merging into an int8 base is not supported."""
        raise NotImplementedError("merging IA3 into a QuaffLinear int8 base is not supported")

    def unmerge(self) -> None:
        """Unmerging is not supported (nothing is ever merged)."""
        raise NotImplementedError("unmerging IA3 from a QuaffLinear base is not supported")

    def __repr__(self) -> str:
        """Like PEFT's IA3 layers: prefixed with `ia3.`."""
        return "ia3." + super().__repr__()


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
    targets = target_modules if isinstance(target_modules, str) else tuple(target_modules)
    config = TrainConfig(
        lora_r=r, lora_alpha=float(alpha), lora_dropout=dropout, lora_target_modules=targets
    )
    return add_adapter(model, config)


def wrap_for_ia3(model: nn.Module, config: PeftConfig) -> None:
    """Wrap the QuaffLinears an IA3 config targets (no-op for other configs and nn.Linear)."""
    if isinstance(config, IA3Config):
        targets = config.target_modules
        feedforward = config.feedforward_modules
        _wrap_for_ia3(
            model,
            targets if isinstance(targets, str) else sorted(targets or ()),
            sorted(feedforward) if isinstance(feedforward, set | list | tuple) else [],
        )


def _wrap_for_ia3(model: nn.Module, targets: str | list[str], feedforward: list[str]) -> None:
    """Put a `QuaffIA3Linear` (no adapter yet) around each targeted QuaffLinear, so that PEFT's
    IA3 injection (which knows only nn.Linear) finds a tuner layer there and adds its vectors."""
    for name, module in list(model.named_modules()):
        if not isinstance(module, QuaffLinear):
            continue
        leaf = name.rpartition(".")[2]
        chosen = targets == "all-linear" or any(name == t or leaf == t for t in targets)
        if not chosen:
            continue
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        ff = any(name == f or leaf == f for f in feedforward)
        setattr(parent, leaf, QuaffIA3Linear(module, is_feedforward=ff))


def _ia3_config(model: nn.Module, target_modules: str | list[str]) -> IA3Config:
    """IA3 on the targeted linears; the MLP's down projections scale their input."""
    targets = _all_linear_targets(model) if target_modules == "all-linear" else target_modules
    feedforward = [t for t in targets if t.rpartition(".")[2] in FEEDFORWARD_LEAVES]
    _wrap_for_ia3(model, targets, feedforward)
    return IA3Config(task_type="CAUSAL_LM", target_modules=targets, feedforward_modules=feedforward)


def peft_config(model: nn.Module, config: TrainConfig) -> PeftConfig:
    """The PEFT config of `config.peft_method` for `model` (IA3 first wraps its QuaffLinears)."""
    targets = config.lora_target_modules
    target_list: str | list[str] = targets if isinstance(targets, str) else list(targets)
    method = config.peft_method
    if method == "lora":
        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=config.lora_r,
            lora_alpha=config.lora_alpha,  # type: ignore[arg-type]  # PEFT types it int
            lora_dropout=config.lora_dropout,
            target_modules=(
                _all_linear_targets(model) if target_list == "all-linear" else target_list
            ),
            bias="none",
            use_rslora=config.use_rslora,
            use_dora=config.use_dora,
        )
        lora._register_custom_module({QuaffLinear: QuaffLoraLinear})
        return lora
    if method == "ia3":
        return _ia3_config(model, target_list)
    tokens = config.num_virtual_tokens
    if method == "prefix_tuning":
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens)
    if method == "prompt_tuning":
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens)
    if method == "p_tuning":
        return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens)
    raise ValueError(f"unknown peft_method {method!r}; use one of lora, ia3, prefix_tuning, ...")


def add_adapter(model: nn.Module, config: TrainConfig) -> PeftModel:
    """Wrap `model` in the PEFT model of `config.peft_method` (LoRA, IA3 or virtual tokens)."""
    peft_model = get_peft_model(model, peft_config(model, config))
    if config.peft_method == "ia3":
        # PEFT's injection leaves the base trainable when it finds tuner layers already in place
        for name, param in peft_model.named_parameters():
            param.requires_grad_(".ia3_l." in name)
    return peft_model
