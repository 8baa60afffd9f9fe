"""What a run really uses: the "auto" settings resolved for its device, and the compile warm-up.

`resolve_runtime` turns `compute_dtype` / `compile` "auto" into values
(`quaff_core.quant.capabilities`);
`warm_up` runs one forward and backward before training so that `torch.compile` builds its code
outside the timed steps, and falls back to eager code when compilation fails.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from quaff_core.lm.evaluation import batch_counts
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.capabilities import (
    AUTO,
    DtypeSetting,
    int8_backend,
    resolve_compile,
    resolve_compute_dtype,
)
from quaff_core.quant.linear import quaff_layers
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import TrainCallbacks

logger = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# "auto" compiles only runs that repay the warm-up (measured: 15-40 s on a 2-core CPU): a model
# of at least this many parameters, trained for at least this many steps
COMPILE_MIN_PARAMS = 20_000_000
COMPILE_MIN_STEPS = 20


@dataclass(frozen=True)
class Runtime:
    """The resolved settings of one run (stored on the job, shown by the API)."""

    device: str
    compute_dtype: str
    compile: bool
    int8_backend: str
    threads: int
    gradient_checkpointing: bool
    devices: int = 1
    effective_batch_size: int = 0

    @property
    def dtype(self) -> torch.dtype:
        """`compute_dtype` as a torch dtype."""
        return DTYPES[self.compute_dtype]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def training_device() -> str:
    """Where HF Trainer will put the model: CUDA when present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def worth_compiling(n_params: int, total_steps: int) -> bool:
    """Whether a run is big and long enough for `torch.compile`'s warm-up to pay off."""
    return n_params >= COMPILE_MIN_PARAMS and total_steps >= COMPILE_MIN_STEPS


def resolve_runtime(
    config: TrainConfig,
    device: str | None = None,
    *,
    n_params: int = COMPILE_MIN_PARAMS,
    total_steps: int = COMPILE_MIN_STEPS,
) -> Runtime:
    """The config's "auto" settings resolved for `device` (default: the training device):
    compile "auto" = where inductor works and `worth_compiling(n_params, total_steps)`."""
    device = device or training_device()
    setting: DtypeSetting = (
        AUTO if config.compute_dtype == AUTO else DTYPES[str(config.compute_dtype)]
    )
    dtype = resolve_compute_dtype(setting, device) or torch.float32
    name = next(k for k, v in DTYPES.items() if v == dtype)
    quantized = config.quantization == "quaff"
    compile = resolve_compile(config.compile, device)
    if config.compile == AUTO:
        compile = compile and worth_compiling(n_params, total_steps)
    return Runtime(
        device=device,
        compute_dtype=name,
        compile=quantized and compile,
        int8_backend=int8_backend(device) if quantized else "none",
        threads=torch.get_num_threads(),
        gradient_checkpointing=config.gradient_checkpointing,
        devices=config.devices,
        effective_batch_size=config.effective_batch_size,
    )


def report_runtime(runtime: Runtime, callbacks: TrainCallbacks) -> None:
    """One event with the resolved settings."""
    callbacks.on_event(
        TrainEvent(
            EventKind.RUNTIME,
            f"Training on {runtime.device} with {runtime.compute_dtype} compute, "
            f"compile {'on' if runtime.compile else 'off'}, int8 backend {runtime.int8_backend}, "
            f"{runtime.threads} threads, {runtime.devices} device(s), effective batch "
            f"{runtime.effective_batch_size}",
            runtime.to_dict(),
        )
    )


def _compile_off(model: nn.Module) -> None:
    """Switch every QuaffLinear of `model` to eager quantize passes."""

    for layer in quaff_layers(model).values():
        layer.compile_setting = False


def warm_up(model: nn.Module, batch: dict[str, torch.Tensor], callbacks: TrainCallbacks) -> bool:
    """One eval-mode forward + backward on `batch` (compiles what `compile` asks for); on a
    compile failure the model goes eager and an event says so. Returns whether compile held.

    Eval mode: no dropout and no outlier-scale update, so training is unchanged; LoRA gradients
    made here are dropped.
    """

    was_training = model.training
    start = time.monotonic()
    compiled = True
    model.eval()
    try:
        batch_counts(model, batch).loss.backward()
    except Exception as exc:  # inductor raises many types; any failure means: run eager
        logger.warning("torch.compile failed, training eagerly: %s", exc)
        compiled = False
        _compile_off(model)
        torch._dynamo.reset()
        callbacks.on_event(
            TrainEvent(
                EventKind.COMPILE_FALLBACK,
                f"torch.compile failed ({type(exc).__name__}); training goes on without it",
                {"error": type(exc).__name__, "message": str(exc).splitlines()[0][:300]},
                level="warn",
            )
        )
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    seconds = round(time.monotonic() - start, 2)
    if compiled:
        callbacks.on_event(
            TrainEvent(
                EventKind.WARMUP,
                f"Compiled the quantize passes in {seconds} s (kept out of the ETA)",
                {"seconds": seconds},
            )
        )
    return compiled
