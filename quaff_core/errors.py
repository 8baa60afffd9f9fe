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


class UnsupportedExamplesError(ValueError):
    """Examples this model (or this training method) cannot train on; `lines` names them."""

    def __init__(self, lines: list[int], reason: str, *, dataset: str = "training") -> None:
        shown = ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10 else "")
        noun = "line" if len(lines) == 1 else "lines"
        super().__init__(f"{dataset} file {noun} {shown}: the example {reason}")
        self.lines = lines
        self.reason = reason
        self.dataset = dataset


class StartAdapterError(ValueError):
    """The adapter a run starts from (`train(start_from=...)`) does not fit the run."""
