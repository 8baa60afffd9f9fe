"""`convert_to_quaff` (model transform) and the momentum-state checkpoint helpers."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from quaff_core.quant.capabilities import AUTO, BackendSetting, CompileSetting, DtypeSetting
from quaff_core.quant.head import attach_int8_head_grad
from quaff_core.quant.linear import QuaffLinear, quaff_layers
from quaff_core.quant.outlier_map import OutlierMap, normalise_layer_name
from quaff_core.quant.targets import as_linear, quantizable_linears

logger = logging.getLogger(__name__)

_SCALE_KEY = "outlier_scale"
_INIT_KEY = "outlier_scale_initialized"
_SKIPPED_KEY = "outlier_scale_skipped"


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted `name` by `module`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def convert_to_quaff(
    model: nn.Module,
    outlier_map: OutlierMap,
    *,
    scale_beta: float = 0.9,
    momentum: float | None = None,
    compute_dtype: DtypeSetting = AUTO,
    compile: CompileSetting = AUTO,
    backend: BackendSetting = AUTO,
    head_grad: bool = True,
) -> nn.Module:
    """Replace every `nn.Linear` / `Conv1D` but the output head by `QuaffLinear`, in place.

    Returns `model`. On a PEFT model the base layers are converted and the adapters (`lora_A`,
    `lora_B`) stay trainable full-precision linears. The full-precision weights are released:
    only int8 weights, float32 scales and the outlier columns remain. Layers missing from the map
    get no outlier channels (one warning lists them). `compile=True` runs the quantize/dequantize
    passes through `torch.compile`. A model that already holds QuaffLinear layers is refused.
    `scale_beta` in [0, 1] weights the new statistic of the outlier scale (`momentum`, the old
    weight of the old value, is deprecated); `compute_dtype`, `compile` and `backend` (the int8
    GEMM, `quaff_core.quant.capabilities.INT8_BACKENDS`) accept "auto"
    (`quaff_core.quant.capabilities`). With `head_grad` (for training) the output head keeps its
    weight and gets an int8 copy for its input gradient where the device has an 8-bit int8 GEMM
    (`quaff_core.quant.head`); inference needs none.
    """
    if not isinstance(outlier_map, OutlierMap):
        raise TypeError(f"outlier_map must be an OutlierMap, got {type(outlier_map).__name__}")
    converted = quaff_layers(model)
    if converted:
        raise ValueError(
            f"model is already converted ({len(converted)} QuaffLinear layers, e.g. "
            f"{next(iter(converted))!r}); call convert_to_quaff once, on the unconverted model"
        )
    linears = quantizable_linears(model)
    missing: list[str] = []
    for name, linear in linears.items():
        channels = outlier_map.channels(name)
        if channels is None:
            missing.append(normalise_layer_name(name))
            channels = []
        quaff = QuaffLinear.from_linear(
            as_linear(linear),
            channels,
            scale_beta=scale_beta,
            momentum=momentum,
            compute_dtype=compute_dtype,
            compile=compile,
            backend=backend,
        )
        quaff.train(linear.training)
        _set_submodule(model, name, quaff)
        linear.weight = None  # type: ignore[assignment]  # drop our reference to the fp weight
    if missing:
        logger.warning(
            "outlier map has no entry for %d layer(s); converted without outlier channels: %s",
            len(missing),
            ", ".join(missing),
        )
    logger.info("converted %d linear layers to QuaffLinear", len(linears))
    if head_grad and attach_int8_head_grad(model, backend=backend, compile=compile) is not None:
        logger.info("the output head's input gradient runs through the int8 GEMM")
    return model


def quaff_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Scale state per QuaffLinear: `<layer>.outlier_scale` (f32 [n_o]), `..._initialized`
    (bool) and `..._skipped` (int64 count of updates left out for a non-finite/zero statistic)."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in quaff_layers(model).items():
        for key in (_SCALE_KEY, _INIT_KEY, _SKIPPED_KEY):
            state[f"{name}.{key}"] = getattr(layer, key).detach().clone()
    return state


def load_quaff_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Restore `quaff_state_dict` output (files without `_skipped` keys load with 0 skips);
    ValueError naming missing/unexpected/mis-shaped keys or a non-finite scale."""
    layers = quaff_layers(model)
    required = {f"{n}.{k}" for n in layers for k in (_SCALE_KEY, _INIT_KEY)}
    optional = {f"{n}.{_SKIPPED_KEY}" for n in layers}
    missing = sorted(required - set(state))
    unexpected = sorted(set(state) - required - optional)
    if missing or unexpected:
        raise ValueError(
            f"Quaff state does not match the model: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    for name, layer in layers.items():
        scale = state[f"{name}.{_SCALE_KEY}"]
        if tuple(scale.shape) != tuple(layer.outlier_scale.shape):
            raise ValueError(
                f"{name}.{_SCALE_KEY}: shape {tuple(scale.shape)} does not match "
                f"{tuple(layer.outlier_scale.shape)}"
            )
        if not bool(torch.isfinite(scale).all()):
            raise ValueError(f"{name}.{_SCALE_KEY} holds non-finite values; the state is corrupt")
    with torch.no_grad():
        for name, layer in layers.items():
            layer.outlier_scale.copy_(state[f"{name}.{_SCALE_KEY}"])
            layer.outlier_scale_initialized.copy_(state[f"{name}.{_INIT_KEY}"])
            skipped = state.get(f"{name}.{_SKIPPED_KEY}")
            if skipped is None:
                layer.outlier_scale_skipped.zero_()
            else:
                layer.outlier_scale_skipped.copy_(skipped)
