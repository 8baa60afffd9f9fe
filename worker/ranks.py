"""The program each rank of a multi-device job runs (`torchrun ... -m worker.ranks SPEC.json`).

It joins the process group (gloo on CPU, NCCL on GPUs), loads the base on its device and calls
`quaff_core.training.train` with the outlier map the worker resolved; rank 0 reports through the
relay files and writes `result.json`. No store access: the worker keeps the lease and the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.callbacks import NullCallbacks, TrainCallbacks
from quaff_core.training.ddp import RankCallbacks, world
from quaff_core.training.train import TrainResult, train
from worker.relay import RelayWriter

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class RankSpec:
    """What every rank needs: the base, the data, the config, where to write and report."""

    model: str
    train_file: str
    validation_file: str | None
    output_dir: str
    config: dict[str, Any]
    outlier_map: str | None
    resume_from: str | None
    relay_dir: str
    parent_pid: int
    threads: int

    def write(self, path: Path) -> Path:
        """The spec as JSON at `path`."""
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")
        return path


def result_record(result: TrainResult) -> dict[str, Any]:
    """The parts of a `TrainResult` the worker stores (paths as strings)."""
    return {
        "adapter_dir": str(result.adapter_dir) if result.adapter_dir else None,
        "checkpoint_dir": str(result.checkpoint_dir) if result.checkpoint_dir else None,
        "stopped": result.stopped,
        "final_step": result.final_step,
        "total_steps": result.total_steps,
        "trained_tokens": result.trained_tokens,
        "metrics": result.metrics,
        "n_truncated": result.n_truncated,
        "n_dropped": result.n_dropped,
    }


def read_result(output_dir: Path) -> TrainResult:
    """Rank 0's `result.json` as a `TrainResult`."""
    record = json.loads((output_dir / RESULT_FILE).read_text(encoding="utf-8"))
    for key in ("adapter_dir", "checkpoint_dir"):
        record[key] = Path(record[key]) if record[key] else None
    return TrainResult(output_dir=output_dir, **record)


def run(spec: RankSpec) -> None:
    """Train this rank's share of the job."""
    torch.set_num_threads(spec.threads)
    gpu = torch.cuda.is_available()
    if spec.config["devices"] > 1:  # one rank trains as one process does: no DDP wrapper
        dist.init_process_group("nccl" if gpu else "gloo")  # env:// rendezvous from torchrun
    rank = world()[0]  # one host: the global rank is the local one
    if gpu:
        torch.cuda.set_device(rank)
    model, tokenizer = load_base_model(spec.model, device=f"cuda:{rank}" if gpu else "cpu")
    inner: TrainCallbacks = (
        RelayWriter(Path(spec.relay_dir), spec.parent_pid) if rank == 0 else NullCallbacks()
    )
    result = train(
        (model, tokenizer),
        spec.train_file,
        spec.output_dir,
        config=TrainConfig.from_dict(spec.config),
        validation_data=spec.validation_file,
        outlier_map=spec.outlier_map,
        callbacks=RankCallbacks(inner, rank),
        resume_from=spec.resume_from,
        base_model_id=spec.model,
    )
    if rank == 0:
        staging = Path(spec.output_dir) / f".{RESULT_FILE}.partial"
        staging.write_text(json.dumps(result_record(result)), encoding="utf-8")
        staging.replace(Path(spec.output_dir) / RESULT_FILE)
    if dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """`python -m worker.ranks SPEC.json` (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR...)."""
    parser = argparse.ArgumentParser(prog="python -m worker.ranks")
    parser.add_argument("spec", type=Path, help="the RankSpec JSON the worker wrote")
    spec = parser.parse_args(argv).spec
    run(RankSpec(**json.loads(spec.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
