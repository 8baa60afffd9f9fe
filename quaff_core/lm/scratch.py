"""Per-thread reusable tensors: a large temporary allocated afresh on every call costs its page
faults every time on CPU (glibc maps blocks of 32 MiB and more afresh per allocation and unmaps
them on free), a reused one only once."""

from __future__ import annotations

import math
import threading
from typing import Any

import torch

_scratch = threading.local()


def scratch_buffer(
    shape: torch.Size | tuple[int, ...], dtype: torch.dtype, device: torch.device, purpose: str
) -> torch.Tensor:
    """A `shape` view of this thread's reusable buffer for `purpose` (grown to the largest size
    asked for): a fresh tensor of a large layer per call costs its page faults on every call
    (tens of MB on CPU); a reused one does not. Valid until the next call for `purpose`."""
    buffers: dict[tuple[Any, ...], torch.Tensor] = _scratch.__dict__.setdefault("buffers", {})
    key = (purpose, dtype, device)
    numel = math.prod(shape)
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[key] = torch.empty(numel, dtype=dtype, device=device)
    return buffer[:numel].view(shape)
