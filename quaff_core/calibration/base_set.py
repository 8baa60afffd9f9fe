"""The general chat set a base model's own outlier map is calibrated on (one map per base).

The paper's premise is that outlier channels are a property of the model that fine-tuning does
not move, so one map, calibrated on everyday chat, serves every job on a base; bench/RESULTS.md
("One outlier map per base") measures the quality of that choice against each job's own map.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from quaff_core.data.jsonl import Example, read_examples

GENERAL_CHAT = Path(__file__).with_name("general_chat.jsonl")


def base_calibration_examples() -> list[Example]:
    """The general chat conversations (48, varied tasks, with and without a system prompt)."""
    return read_examples(GENERAL_CHAT, name="the general chat calibration set")


def base_calibration_sha256() -> str:
    """The set's checksum: a stored base map names the data it was calibrated on by it."""
    return hashlib.sha256(GENERAL_CHAT.read_bytes()).hexdigest()
