"""File names of what training writes (adapters, checkpoints): the one home for each name."""

from __future__ import annotations

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "checkpoint-"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MOMENTUM_FILE = "quaff_momentum.safetensors"
OUTLIER_MAP_FILE = "outlier_map.json"
QUAFF_FILE = "quaff.json"
METRICS_FILE = "metrics.jsonl"
TRAINER_STATE = "trainer_state.json"
