"""Data-parallel training over the ranks of one process group (one job on several devices).

The int8 base is frozen: DDP reduces only LoRA gradients, and it is told to neither sync nor
broadcast any buffer or frozen parameter, so the int8 weights never travel. Each rank updates
its outlier scales (`QuaffLinear.outlier_scale`, an EMA of a per-channel max of |x|) from its own
micro-batch; `ScaleSync` all-reduces them with MAX after every optimizer step. With one
micro-batch per step that is exactly the one-process update on the union batch (the EMA is
monotone and the ranks start from the same state: max_r(b * fresh_r + (1 - b) * s) =
b * max_r(fresh_r) + (1 - b) * s), so every rank, and every checkpoint rank 0 writes, holds the
same scales. Only rank 0 reports and writes files; stop requests are rank 0's answer, broadcast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from quaff_core.quant.linear import quaff_layers
from quaff_core.train_events import TrainEvent
from quaff_core.training.callbacks import CONTROLS, Control, ProgressEvent, TrainCallbacks


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _collective_device() -> torch.device:
    """Where a collective's tensors must live: the rank's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def frozen_names(model: nn.Module) -> list[str]:
    """Every buffer and every parameter that needs no gradient (the int8 base, norms, head)."""
    names = [name for name, _ in model.named_buffers()]
    return names + [name for name, p in model.named_parameters() if not p.requires_grad]


def ignore_frozen(model: nn.Module) -> None:
    """Tell DDP (before it wraps `model`) to leave the frozen state alone: no start-up broadcast
    of the base, no buffer broadcast per forward; LoRA parameters alone are synced."""
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen_names(model))


def sync_outlier_scales(model: nn.Module) -> None:
    """All-reduce (MAX) every QuaffLinear's `outlier_scale` [n_o] in one flat f32 collective."""

    if world()[1] == 1:
        return
    layers = [layer for layer in quaff_layers(model).values() if layer.n_outliers]
    if not layers:
        return
    flat = torch.cat([layer.outlier_scale.float() for layer in layers]).to(_collective_device())
    dist.all_reduce(flat, op=dist.ReduceOp.MAX)
    offset = 0
    for layer in layers:
        n = layer.n_outliers
        layer.outlier_scale.copy_(flat[offset : offset + n])
        offset += n


def sum_over_ranks(values: Sequence[float]) -> list[float]:
    """`values` summed element-wise over the ranks (unchanged with one process)."""
    if world()[1] == 1:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def on_rank0(hook: Callable[[Path], None]) -> Callable[[Path], None]:
    """`hook(path)` on rank 0 once every rank has written its part of the checkpoint."""

    def run(path: Path) -> None:
        if world()[1] > 1:
            dist.barrier()
        if world()[0] == 0:
            hook(path)

    return run


class ScaleSync(TrainerCallback):
    """After every optimizer step, make the ranks' outlier scales equal (`sync_outlier_scales`)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """One MAX all-reduce of all scales."""
        sync_outlier_scales(self.model)


class RankCallbacks:
    """`TrainCallbacks` for one rank: rank 0 reports to `inner`, the others stay silent; every
    rank gets rank 0's `control()` answer, broadcast (so all stop or save at the same step)."""

    def __init__(self, inner: TrainCallbacks, rank: int) -> None:
        self.inner, self.rank = inner, rank

    def on_progress(self, event: ProgressEvent) -> None:
        """Rank 0's progress only."""
        if self.rank == 0:
            self.inner.on_progress(event)

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        """Rank 0's checkpoint only (it holds everything the checkpoint needs)."""
        if self.rank == 0:
            self.inner.on_checkpoint(step, path, metrics)

    def on_event(self, event: TrainEvent) -> None:
        """Rank 0's phase events only."""
        if self.rank == 0:
            self.inner.on_event(event)

    def control(self) -> Control:
        """Rank 0 asks `inner`; the answer is broadcast to every rank."""
        answer = self.inner.control() if self.rank == 0 else "continue"
        if answer not in CONTROLS:
            raise ValueError(f"control() must return one of {CONTROLS}, got {answer!r}")
        if world()[1] == 1:
            return answer
        code = torch.tensor([CONTROLS.index(answer)], device=_collective_device())
        dist.broadcast(code, src=0)
        return CONTROLS[int(code.item())]
