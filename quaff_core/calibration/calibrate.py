"""`calibrate`: find activation outlier input channels of every linear layer with forward hooks."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from quaff_core.calibration.channel_stats import HitCounter, ScaleExcess
from quaff_core.options.spec import OUTLIER_STRATEGIES
from quaff_core.quant.linear import quaff_layers
from quaff_core.quant.outlier_map import OutlierMap, normalise_layer_name
from quaff_core.quant.targets import dense_weight, in_features, quantizable_linears

logger = logging.getLogger(__name__)

STRATEGIES = OUTLIER_STRATEGIES
DEFAULT_STRATEGY = STRATEGIES[0]
DEFAULT_MAX_RATIO = 0.01
# the threshold each strategy uses when none is given. int8_scale: chosen with
# bench/calibration_curve.py (mean credit per token, in units of the token's mean square);
# mean_times: the paper's 100; top_abs ignores it; zscore, static: starting points only
DEFAULT_THRESHOLDS = {
    "int8_scale": 1.0,
    "mean_times": 100.0,
    "top_abs": 1.0,
    "zscore": 8.0,
    "static": 50.0,
}


def calibration_targets(model: nn.Module) -> dict[str, nn.Module]:
    """The base projections whose inputs calibration measures, by normalised name.

    The `QuaffLinear` layers of a converted (possibly PEFT-wrapped) model, else every `nn.Linear`
    and `Conv1D` but the head and PEFT adapters (`quantizable_linears`).
    """
    converted = quaff_layers(model)
    if converted:
        return dict(converted)
    return dict(quantizable_linears(model))


ChannelStats = ScaleExcess | HitCounter


def _channel_stats(
    strategy: str, module: nn.Module, threshold: float, max_ratio: float
) -> ChannelStats:
    """The running statistics of `strategy` for the inputs of a linear target."""
    width = in_features(module)
    top_k = int(max_ratio * width)
    if strategy == "int8_scale":
        return ScaleExcess(width, threshold, top_k)
    return HitCounter(width, strategy, threshold, top_k)


def weight_max(module: nn.Module) -> torch.Tensor:
    """max_n |W[n, k]| of a linear target per input channel: float32 [K]."""
    return dense_weight(module).abs().amax(dim=0).float().cpu()


def _select(stats: ChannelStats, module: nn.Module) -> list[int]:
    """The channels `stats` selects (`int8_scale` also reads the layer's weight)."""
    if isinstance(stats, ScaleExcess):
        return stats.select(weight_max(module))
    return stats.select()


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


def _model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (cpu when it has none)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _seen(stats: ChannelStats) -> bool:
    """Whether `stats` has been fed any activations yet."""
    return bool(stats.max_abs.any())


class _SharedInputs:
    """Statistics per layer, where layers fed the very same input tensor (q/k/v; gate/up) share
    one set: the first of them measures it, the others are aliased to it on the first batch."""

    def __init__(self, stats: dict[str, ChannelStats], share: bool = True) -> None:
        self.stats, self.share = dict(stats), share
        self.last: tuple[torch.Tensor, str] | None = None
        self.followers: set[str] = set()
        self.mask: torch.Tensor | None = None

    def _aliased(self, name: str, x: torch.Tensor) -> bool:
        """Whether `name` follows the layer that was just fed `x` (decided on its first call)."""
        if name in self.followers:
            return True
        if not self.share or self.last is None or self.last[0] is not x:
            return False
        if _seen(self.stats[name]):
            return False
        leader = self.stats[self.last[1]]
        if leader.in_features != x.shape[-1]:
            return False
        self.followers.add(name)
        self.stats[name] = leader
        return True

    def hook(self, name: str) -> Any:
        """The forward pre-hook feeding layer `name`'s valid input tokens to its statistics."""

        def feed(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            if self._aliased(name, x):
                return
            self.last = (x, name)
            mask = self.mask
            if mask is not None and tuple(mask.shape) == tuple(x.shape[:-1]):
                x = x[mask.to(device=x.device, dtype=torch.bool)]
            self.stats[name].update(x.reshape(-1, x.shape[-1]))

        return feed


class _Measured(Exception):
    """Raised after the last measured layer: the rest of the forward (final norm, head) is waste."""


class _LastLayer:
    """The measured layer called last in a forward, learned on the first batch; from then on its
    forward hook ends the forward, so no batch pays for the head's [B, T, vocab] logits."""

    def __init__(self, linears: Mapping[str, nn.Module]) -> None:
        self.order: list[str] = []
        self.handles = [m.register_forward_pre_hook(self._called(n)) for n, m in linears.items()]
        self.linears = linears

    def _called(self, name: str) -> Any:
        def note(module: nn.Module, args: tuple[Any, ...]) -> None:
            self.order.append(name)

        return note

    def learned(self) -> None:
        """After the first batch: stop recording, stop each forward after the last layer."""
        self.remove()
        if self.order:
            self.handles.append(self.linears[self.order[-1]].register_forward_hook(_stop_forward))

    def remove(self) -> None:
        """Remove every hook."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _stop_forward(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
    raise _Measured


def _observe(
    model: nn.Module,
    batches: Iterable[Any],
    linears: Mapping[str, nn.Module],
    stats: dict[str, ChannelStats],
    share_inputs: bool = True,
) -> int:
    """Run `batches` through `model` in eval mode, feeding each linear's valid input tokens to its
    stats (tokens with attention_mask == 0 are dropped); returns the number of valid tokens.
    Each forward after the first stops once the last measured layer has run."""
    shared = _SharedInputs(stats, share_inputs)
    device = _model_device(model)
    was_training = model.training
    handles = [m.register_forward_pre_hook(shared.hook(n)) for n, m in linears.items()]
    last = _LastLayer(linears)
    tokens = 0
    try:
        model.eval()
        with torch.no_grad():
            for index, batch in enumerate(batches):
                kwargs, mask = _split_batch(batch)
                ids = kwargs.get("input_ids")
                if mask is not None:
                    tokens += int(mask.sum())
                elif isinstance(ids, torch.Tensor):
                    tokens += int(ids.numel())
                shared.mask = None if mask is None or bool(mask.all()) else mask
                with contextlib.suppress(_Measured):
                    model(**_to_device(kwargs, device))
                shared.last = None
                if index == 0:
                    last.learned()
    finally:
        for handle in handles:
            handle.remove()
        last.remove()
        model.train(was_training)
    if shared.followers:
        logger.info("calibration: %d layers shared their input's statistics", len(shared.followers))
    stats.update(shared.stats)
    return tokens


def calibrate(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    strategy: str = DEFAULT_STRATEGY,
    threshold: float | None = None,
    max_ratio: float = DEFAULT_MAX_RATIO,
    model_id: str | None = None,
    share_inputs: bool = True,
) -> OutlierMap:
    """Run `batches` through `model` and return the outlier channels of every linear but the head
    (on a Quaff-converted model: the inputs of its QuaffLinear layers, e.g. to re-measure them
    during fine-tuning). Each layer keeps at most floor(max_ratio * K) channels.

    Strategies: `int8_scale` (the default; channels ranked by how much of each token's int8
    scale they hold up, weighted by how far Quaff scales them down; kept if that score is
    >= threshold, see `ScaleExcess`), and the rule-hit strategies, ranked by how many tokens
    hit the rule: `mean_times` (|x| > threshold * mean|x| of the token), `top_abs` (the token's
    max_ratio * K largest |x|), `zscore` ((|x| - mean) / std > threshold) and `static`
    (|x| > threshold). threshold=None takes the strategy's `DEFAULT_THRESHOLDS` entry. Tokens
    with attention_mask == 0 are ignored. Memory stays constant in the number of batches.
    Layers fed the same input tensor (q/k/v, gate/up) share one set of statistics
    (`share_inputs=False` measures each layer's input separately: the same map, more work).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS[strategy]
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a positive finite number, got {threshold}")
    if not 0.0 < max_ratio <= 1.0:
        raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
    linears = calibration_targets(model)
    if not linears:
        raise ValueError("calibrate found no nn.Linear layers (other than the output head)")
    stats = {n: _channel_stats(strategy, m, threshold, max_ratio) for n, m in linears.items()}
    tokens = _observe(model, batches, linears, stats, share_inputs)
    if model_id is None:
        config = getattr(model, "config", None)
        model_id = getattr(config, "_name_or_path", None) or None
    layers = {normalise_layer_name(n): _select(s, linears[n]) for n, s in stats.items()}
    logger.info("calibrated %d layers on %d tokens (%s)", len(layers), tokens, strategy)
    return OutlierMap(
        layers=layers,
        in_features={normalise_layer_name(n): in_features(m) for n, m in linears.items()},
        model_id=model_id,
        strategy=strategy,
        threshold=threshold,
        max_ratio=max_ratio,
        tokens_seen=tokens,
    )
