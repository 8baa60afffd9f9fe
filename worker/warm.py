"""A worker process's warm state: prepared bases and tokenised datasets kept for the next job."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from quaff_core.training.base import TrainingBase
from quaff_core.training.datasets import TrainingData
from store.settings import Settings
from worker.warm_bases import BaseKey, IdleReaper, Lru

MIB = 1024 * 1024


@dataclass(frozen=True)
class DataKey:
    """What makes two tokenised job datasets the same: file contents and tokenising options."""

    model: str
    train_sha256: str
    valid_sha256: str
    method: str
    max_seq_length: int
    train_on_inputs: str


class WarmState:
    """The bases (bounded by `warm_bases_mb`, released after `warm_base_idle_seconds`) and the
    tokenised datasets (`tokenized_cache_entries`) of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.bases: Lru[BaseKey, TrainingBase] = Lru(
            settings.warm_bases_mb * MIB,
            size=lambda base: base.nbytes,
            idle_seconds=settings.warm_base_idle_seconds,
        )
        self.data: Lru[DataKey, TrainingData] = Lru(settings.tokenized_cache_entries)
        self.reaper = IdleReaper(self.bases, every=min(60.0, settings.warm_base_idle_seconds / 2))
        self.reaper.start()

    def tokenizer_for(self, model: str) -> PreTrainedTokenizerBase | None:
        """The tokenizer of any warm base of `model` (they share it), else None."""
        for base in self.bases.values():
            if base.base_id == model:
                return base.tokenizer
        return None

    def close(self) -> None:
        """Drop everything and stop the reaper."""
        self.reaper.stopped.set()
        self.bases.clear()
        self.data.clear()


_STATE: WarmState | None = None
_LOCK = threading.Lock()


def warm_state(settings: Settings) -> WarmState:
    """This process's warm state (made on first use)."""
    global _STATE
    with _LOCK:
        if _STATE is None:
            _STATE = WarmState(settings)
        return _STATE


def reset_warm_state() -> None:
    """Forget every warm base and dataset (tests; a worker that must free memory)."""
    global _STATE
    with _LOCK:
        if _STATE is not None:
            _STATE.close()
        _STATE = None
