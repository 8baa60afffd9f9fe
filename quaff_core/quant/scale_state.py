"""What the outlier-scale statistic of `QuaffLinear` reads besides x: the pad-token mask, and
whether this forward is a gradient-checkpoint recomputation (which must not update the state).

The trainer sets the mask for a forward, either with `with token_mask(attention_mask):` around
it or once with `track_token_mask(model)`, which reads the `attention_mask` keyword of every
forward of the model and of its decoder backbone.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_MASK: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "quaff_token_mask", default=None
)


def check_scale_beta(scale_beta: float) -> float:
    """`scale_beta` as a float in [0, 1]; ValueError/TypeError otherwise."""
    if isinstance(scale_beta, bool) or not isinstance(scale_beta, int | float):
        raise TypeError(f"scale_beta must be a number in [0, 1], got {scale_beta!r}")
    if not 0.0 <= float(scale_beta) <= 1.0:
        raise ValueError(
            f"scale_beta must be in [0, 1] (weight of the new value), got {scale_beta}"
        )
    return float(scale_beta)


def in_backward() -> bool:
    """True inside a backward pass, e.g. while gradient checkpointing recomputes a forward
    (reentrant or not): there the autograd engine runs a graph task."""
    return bool(torch._C._current_graph_task_id() != -1)


@contextmanager
def token_mask(mask: torch.Tensor | None) -> Iterator[None]:
    """Leave tokens where `mask` [B, T] is 0 (padding) out of the outlier statistic inside."""
    reset = _MASK.set(mask)
    try:
        yield
    finally:
        _MASK.reset(reset)


def current_token_mask(n_tokens: int, device: torch.device) -> torch.Tensor | None:
    """The active mask flattened to bool [n_tokens], or None if none is set or it does not fit."""
    mask = _MASK.get()
    if mask is None or mask.numel() != n_tokens:
        return None
    return mask.reshape(-1).to(device=device, dtype=torch.bool)


def _decoder(model: nn.Module) -> nn.Module | None:
    """The decoder backbone of a (PEFT-wrapped) HF causal LM, if it has one."""
    unwrap = getattr(model, "get_base_model", None)
    inner = unwrap() if callable(unwrap) else model
    get_decoder = getattr(inner, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    return decoder if isinstance(decoder, nn.Module) else None


def track_token_mask(model: nn.Module) -> list[RemovableHandle]:
    """Hooks that set the mask from the `attention_mask` keyword of each forward of `model` and
    of its decoder backbone (the chunked loss calls the backbone directly); remove to undo."""
    tokens: list[contextvars.Token[torch.Tensor | None]] = []

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        tokens.append(_MASK.set(kwargs.get("attention_mask")))

    def after(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        if tokens:
            _MASK.reset(tokens.pop())

    handles = []
    for module in {id(m): m for m in (model, _decoder(model)) if m is not None}.values():
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True, always_call=True))
    return handles
