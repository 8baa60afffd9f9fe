"""`calibrate`: find activation outlier input channels of every linear layer with forward hooks."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from quaff_core.linear import quaff_layers
from quaff_core.options import OUTLIER_STRATEGIES
from quaff_core.outliers import OutlierMap, normalise_layer_name

logger = logging.getLogger(__name__)

STRATEGIES = OUTLIER_STRATEGIES


def output_head_names(model: nn.Module) -> set[str]:
    """Module names of the output head (`get_output_embeddings`), which Quaff never quantizes."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if head is None:
        return set()
    return {name for name, module in model.named_modules() if module is head}


def quantizable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every `nn.Linear` except the output head, keyed by module name."""
    skip = output_head_names(model)
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in skip
    }


def calibration_targets(model: nn.Module) -> dict[str, nn.Module]:
    """The base projections whose inputs calibration measures, by normalised name.

    The `QuaffLinear` layers of a converted (possibly PEFT-wrapped) model, else every `nn.Linear`
    but the head (`quantizable_linears`).
    """
    converted = quaff_layers(model)
    if converted:
        return dict(converted)
    return dict(quantizable_linears(model))


class _ChannelStats:
    """Running per-channel statistics of one layer: counts of rule hits (int64 [K])."""

    def __init__(self, in_features: int, strategy: str, threshold: float, top_k: int) -> None:
        self.in_features = in_features
        self.strategy = strategy
        self.threshold = threshold
        self.top_k = top_k
        self.counts = torch.zeros(in_features, dtype=torch.int64)
        self.max_abs = torch.zeros(in_features, dtype=torch.float32)

    def update(self, x: torch.Tensor) -> None:
        """x [T, K] activations of valid tokens."""
        a = x.detach().float().abs()
        if self.strategy == "mean_times":
            hits = a > self.threshold * a.mean(dim=1, keepdim=True)
        elif self.strategy == "zscore":
            mean = a.mean(dim=1, keepdim=True)
            std = a.std(dim=1, keepdim=True).clamp_min(1e-12)
            hits = (a - mean) / std > self.threshold
        elif self.strategy == "static":
            hits = a > self.threshold
        else:  # top_abs: the k largest |x| of each token
            k = max(1, self.top_k)
            idx = a.topk(k, dim=1).indices
            hits = torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True)
        self.counts += hits.sum(dim=0).cpu()
        self.max_abs = torch.maximum(self.max_abs, a.amax(dim=0).cpu())

    def select(self) -> list[int]:
        """At most top_k channels that hit the rule, most frequent first (ties: larger max|x|)."""
        hit = (self.counts > 0).nonzero().flatten().tolist()
        hit.sort(key=lambda c: (-int(self.counts[c]), -float(self.max_abs[c]), c))
        return sorted(hit[: self.top_k])


def _split_batch(batch: Any) -> tuple[dict[str, Any], torch.Tensor | None]:
    """A batch (LongTensor [B, T] or Mapping of kwargs) -> (model kwargs, mask [B, T] or None)."""
    if isinstance(batch, torch.Tensor):
        if batch.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"tensor batches must be input_ids (int64), got {batch.dtype}")
        return {"input_ids": batch}, None
    if isinstance(batch, Mapping):
        kwargs = dict(batch)
        mask = kwargs.get("attention_mask")
        return kwargs, mask if isinstance(mask, torch.Tensor) else None
    raise TypeError(f"calibration batches must be a LongTensor or a Mapping, got {type(batch)}")


def _to_device(kwargs: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensor values of a kwargs dict to `device`."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def calibrate(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    strategy: str = "mean_times",
    threshold: float = 100.0,
    max_ratio: float = 0.01,
    model_id: str | None = None,
) -> OutlierMap:
    """Run `batches` through `model` and return the outlier channels of every linear but the head
    (on a Quaff-converted model: the inputs of its QuaffLinear layers, e.g. to re-measure them
    during fine-tuning).

    Strategies: `mean_times` (|x| > threshold * mean|x| of the token), `top_abs` (the token's
    max_ratio * K largest |x|), `zscore` ((|x| - mean) / std > threshold) and `static`
    (|x| > threshold). Channels are ranked by how many tokens hit the rule; tokens with
    attention_mask == 0 are ignored. Memory stays constant in the number of batches.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a positive finite number, got {threshold}")
    if not 0.0 < max_ratio <= 1.0:
        raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
    linears = calibration_targets(model)
    if not linears:
        raise ValueError("calibrate found no nn.Linear layers (other than the output head)")
    stats = {
        name: _ChannelStats(
            int(m.in_features), strategy, threshold, int(max_ratio * int(m.in_features))
        )
        for name, m in linears.items()
    }
    state: dict[str, torch.Tensor | None] = {"mask": None}

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            mask = state["mask"]
            if mask is not None and tuple(mask.shape) == tuple(x.shape[:-1]):
                x = x[mask.to(device=x.device, dtype=torch.bool)]
            stats[name].update(x.reshape(-1, x.shape[-1]))

        return hook

    try:
        param = next(model.parameters())
        device = param.device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    handles = [m.register_forward_pre_hook(make_hook(n)) for n, m in linears.items()]
    tokens = 0
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                kwargs, mask = _split_batch(batch)
                ids = kwargs.get("input_ids")
                if mask is not None:
                    tokens += int(mask.sum())
                elif isinstance(ids, torch.Tensor):
                    tokens += int(ids.numel())
                state["mask"] = mask
                model(**_to_device(kwargs, device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if model_id is None:
        config = getattr(model, "config", None)
        model_id = getattr(config, "_name_or_path", None) or None
    layers = {normalise_layer_name(n): s.select() for n, s in stats.items()}
    logger.info("calibrated %d layers on %d tokens (%s)", len(layers), tokens, strategy)
    return OutlierMap(
        layers=layers,
        in_features={normalise_layer_name(n): m.in_features for n, m in linears.items()},
        model_id=model_id,
        strategy=strategy,
        threshold=threshold,
        max_ratio=max_ratio,
        tokens_seen=tokens,
    )
