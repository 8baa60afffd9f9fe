"""A base prepared for training once (cast, Quaff-converted) and copied cheaply for each run.

A long-lived process (the service's worker) keeps a `TrainingBase` between runs: each run trains
a `job_copy`, whose module tree is its own (the adapter wraps its layers) while every frozen
tensor is shared with the base; only the outlier scale state a run updates is copied, fresh from
the map. The base itself is never trained, so a run on a warm base equals a run on a cold one.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.head import Int8HeadGrad
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.training.callbacks import TrainCallbacks
from quaff_core.training.datasets import TrainingData
from quaff_core.training.prepare import quantize_base
from quaff_core.training.runtime import Runtime


@dataclass
class TrainingBase:
    """A converted base model with its tokenizer, map and compute dtype; `warmed` once a run
    has built its compiled code (later runs skip the warm-up)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    base_id: str
    outlier_map: OutlierMap | None
    compute_dtype: str
    n_params: int
    warmed: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes held by the model's tensors (each storage once)."""
        seen: dict[int, int] = {}
        for tensor in [*self.model.parameters(), *self.model.buffers()]:
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return sum(seen.values())

    def job_copy(self, config: TrainConfig, runtime: Runtime) -> PreTrainedModel:
        """A model for one run: shares every frozen tensor, owns its scale state (as the map left
        it) and takes the run's scale_beta and compile settings."""
        if runtime.compute_dtype != self.compute_dtype:
            raise ValueError(
                f"this base was prepared for {self.compute_dtype} compute, the run resolves "
                f"{runtime.compute_dtype}: prepare a base for it"
            )
        memo: dict[int, object] = {}
        for tensor in _frozen_tensors(self.model):
            memo[id(tensor)] = tensor
        model: PreTrainedModel = copy.deepcopy(self.model, memo)
        for layer in model.modules():
            if isinstance(layer, QuaffLinear):
                layer.scale_beta = config.scale_beta
            if isinstance(layer, QuaffLinear | Int8HeadGrad):
                layer.compile_setting = runtime.compile
        return model


def _frozen_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer but the scale state a training forward updates."""
    owned = {
        id(getattr(layer, name))
        for layer in model.modules()
        if isinstance(layer, QuaffLinear)
        for name in QuaffLinear.RUN_STATE
    }
    tensors = [*model.parameters(), *model.buffers()]
    return [t for t in tensors if id(t) not in owned]


def prepare_base(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    base_id: str,
    config: TrainConfig,
    runtime: Runtime,
    outlier_map: OutlierMap | str | os.PathLike[str] | None,
    data: TrainingData,
    callbacks: TrainCallbacks,
) -> TrainingBase:
    """Convert `model` in place for `runtime` (with `outlier_map`, or one calibrated on `data`)
    and keep it as a base runs copy; unquantized runs keep the model as it is."""
    used = None
    n_params = sum(p.numel() for p in model.parameters())
    if config.quantization == "quaff":
        used = quantize_base(
            model,
            config,
            data.train_set,
            pad_token_id=int(tokenizer.pad_token_id),
            outlier_map=outlier_map,
            callbacks=callbacks,
            model_id=base_id,
            runtime=runtime,
        )
    elif outlier_map is not None:
        raise ValueError("an outlier map was given but quantization is 'none'; drop one of them")
    return TrainingBase(model, tokenizer, base_id, used, runtime.compute_dtype, n_params)
