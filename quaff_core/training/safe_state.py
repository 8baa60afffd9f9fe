"""Trainer checkpoints without pickles: optimizer, scheduler and RNG state as safetensors + JSON.

HF `Trainer` writes `optimizer.pt`, `scheduler.pt`, `rng_state.pth` and `training_args.bin` with
`torch.save`. `SafeStateMixin` replaces them by `optimizer.safetensors` + `optimizer.json`,
`scheduler.json`, `rng_state[_rank].safetensors` + `.json` and `training_args.json`, and reads them
back on resume, so a checkpoint holds only tensors and JSON.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
SCHEDULER_JSON = "scheduler.json"
TRAINING_ARGS_JSON = "training_args.json"
PICKLED = ("optimizer.pt", "scheduler.pt", "training_args.bin")


def optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer `state_dict()` as (tensors by 'state/<param>/<key>', the JSON rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{param}/{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(param), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer_state(
    tensors: dict[str, torch.Tensor], doc: dict[str, Any]
) -> dict[str, Any]:
    """The inverse of `optimizer_state`: an optimizer `state_dict()`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, param, key = name.split("/", 2)
        state.setdefault(int(param), {})[key] = value
    for param, values in doc["scalars"].items():
        state.setdefault(int(param), {}).update(values)
    return {"state": state, "param_groups": doc["param_groups"]}


def _rng_names(args: Any) -> tuple[str, str]:
    """The RNG files of this process (one pair per rank when distributed)."""
    suffix = "" if args.world_size <= 1 else f"_{args.process_index}"
    return f"rng_state{suffix}.safetensors", f"rng_state{suffix}.json"


def save_rng(output_dir: Path, args: Any) -> None:
    """Python, NumPy, torch CPU (and CUDA) generator states."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    doc = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached],
    }
    tensors = {"cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        for i, cuda in enumerate(torch.cuda.random.get_rng_state_all()):
            tensors[f"cuda/{i}"] = cuda
    tensor_name, json_name = _rng_names(args)
    save_file(tensors, str(output_dir / tensor_name))
    (output_dir / json_name).write_text(json.dumps(doc), encoding="utf-8")


def load_rng(checkpoint: Path, args: Any) -> bool:
    """Restore the states written by `save_rng`; False when the checkpoint has none."""
    tensor_name, json_name = _rng_names(args)
    if not (checkpoint / tensor_name).is_file():
        return False
    doc = json.loads((checkpoint / json_name).read_text(encoding="utf-8"))
    version, internal, gauss = doc["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = doc["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    tensors = load_file(str(checkpoint / tensor_name))
    torch.random.set_rng_state(tensors["cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.random.set_rng_state_all(cuda[: torch.cuda.device_count()])
    return True


class SafeStateMixin:
    """Overrides HF `Trainer`'s pickle-based checkpoint state (mix in before `Trainer`)."""

    args: Any
    optimizer: Any
    lr_scheduler: Any

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """Optimizer tensors as safetensors, the rest and the scheduler as JSON."""
        target = Path(output_dir)
        target.mkdir(parents=True, exist_ok=True)
        if not self.args.should_save:
            return
        tensors, doc = optimizer_state(self.optimizer.state_dict())
        save_file(tensors, str(target / OPTIMIZER_TENSORS))
        (target / OPTIMIZER_JSON).write_text(json.dumps(doc), encoding="utf-8")
        schedule = self.lr_scheduler.state_dict()
        (target / SCHEDULER_JSON).write_text(json.dumps(schedule), encoding="utf-8")

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """Read the files `_save_optimizer_and_scheduler` wrote (older checkpoints: HF's own)."""
        if checkpoint is None:
            return
        source = Path(checkpoint)
        if not (source / OPTIMIZER_TENSORS).is_file():
            super()._load_optimizer_and_scheduler(checkpoint)  # type: ignore[misc]
            return
        doc = json.loads((source / OPTIMIZER_JSON).read_text(encoding="utf-8"))
        device = self.args.device  # "cpu:0" on a gloo rank, which safetensors refuses
        where = "cpu" if device.type == "cpu" else str(device)
        tensors = load_file(str(source / OPTIMIZER_TENSORS), device=where)
        self.optimizer.load_state_dict(restore_optimizer_state(tensors, doc))
        schedule = json.loads((source / SCHEDULER_JSON).read_text(encoding="utf-8"))
        self.lr_scheduler.load_state_dict(schedule)

    def _save_rng_state(self, output_dir: str) -> None:
        """Generator states as safetensors + JSON."""
        target = Path(output_dir)
        target.mkdir(parents=True, exist_ok=True)
        save_rng(target, self.args)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        """Restore generator states (older checkpoints: HF's own file)."""
        if checkpoint is not None and not load_rng(Path(checkpoint), self.args):
            super()._load_rng_state(checkpoint)  # type: ignore[misc]

    def _save(
        self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None
    ) -> None:
        """HF's save, with the training arguments as JSON instead of a pickle."""
        super()._save(output_dir, state_dict)  # type: ignore[misc]
        target = Path(output_dir if output_dir is not None else self.args.output_dir)
        pickled = target / "training_args.bin"
        if pickled.is_file():
            os.remove(pickled)
        if self.args.should_save:
            (target / TRAINING_ARGS_JSON).write_text(self.args.to_json_string(), encoding="utf-8")
