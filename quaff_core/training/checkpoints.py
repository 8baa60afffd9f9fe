"""Checkpoint and adapter files beyond HF's: momentum buffers, outlier map, quaff.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from quaff_core.file_names import MOMENTUM_FILE, OUTLIER_MAP_FILE, QUAFF_FILE, TRAINER_STATE
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import quaff_state_dict
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.training.callbacks import preference_metrics


def metrics_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-step training and evaluation metrics from HF's `TrainerState.log_history`."""
    rows: list[dict[str, Any]] = []
    for entry in log_history:
        if "loss" in entry:
            rows.append(
                {
                    "step": entry["step"],
                    "epoch": entry.get("epoch"),
                    "train_loss": entry["loss"],
                    "train_mean_token_accuracy": entry.get("mean_token_accuracy"),
                    "learning_rate": entry.get("learning_rate"),
                    **preference_metrics(entry, evaluation=False),
                }
            )
        elif "eval_loss" in entry:
            rows.append(
                {
                    "step": entry["step"],
                    "epoch": entry.get("epoch"),
                    "valid_loss": entry["eval_loss"],
                    "valid_mean_token_accuracy": entry.get("eval_mean_token_accuracy"),
                    **preference_metrics(entry, evaluation=True),
                }
            )
    return rows


def write_quaff_files(
    path: Path, model: Any, facts: dict[str, Any], outlier_map: OutlierMap | None
) -> None:
    """Momentum buffers (safetensors), outlier map and quaff.json into a checkpoint/adapter dir."""

    path.mkdir(parents=True, exist_ok=True)
    state = quaff_state_dict(model)
    if state:
        save_file({k: v.contiguous().cpu() for k, v in state.items()}, str(path / MOMENTUM_FILE))
    if outlier_map is not None:
        outlier_map.save(path / OUTLIER_MAP_FILE)
    (path / QUAFF_FILE).write_text(json.dumps(facts, indent=1), encoding="utf-8")


def check_resume(resume_from: str | os.PathLike[str] | None) -> Path | None:
    """The checkpoint directory to resume from, validated."""
    if resume_from is None:
        return None
    path = Path(resume_from)
    if not (path / TRAINER_STATE).is_file() or not (path / QUAFF_FILE).is_file():
        raise ValueError(f"resume_from {os.fspath(path)!r} is not a Quaff training checkpoint")
    return path


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was written at (from HF's trainer_state.json)."""
    return int(json.loads((path / TRAINER_STATE).read_text())["global_step"])


def adapter_facts(
    base_id: str, config: TrainConfig, outlier_map: OutlierMap | None
) -> dict[str, Any]:
    """The quaff.json document: base model, quantization and outlier-map facts, LoRA options."""
    quant: dict[str, Any] = {"method": config.quantization}
    if config.quantization == "quaff" and outlier_map is not None:
        quant.update(
            scale_beta=config.scale_beta,
            outlier_strategy=outlier_map.strategy,
            outlier_threshold=outlier_map.threshold,
            outlier_max_ratio=outlier_map.max_ratio,
            outlier_channels=outlier_map.num_channels,
            layers=len(outlier_map.layers),
            calibration_tokens=outlier_map.tokens_seen,
        )
    return {
        "format": "quaff-adapter",
        "version": 1,
        "base_model": base_id,
        "quantization": quant,
        "lora": {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout},
        "config": config.to_dict(),
    }
