"""Exceptions callers of the library catch by class (never by message text)."""

from __future__ import annotations


class NothingToTrainError(ValueError):
    """No example has a trainable token within `max_seq_length`."""

    def __init__(self, dataset: str, max_seq_length: int) -> None:
        super().__init__(
            f"no {dataset} example has a trainable token within max_seq_length="
            f"{max_seq_length}; raise max_seq_length"
        )
        self.dataset = dataset
        self.max_seq_length = max_seq_length
