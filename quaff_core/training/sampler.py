"""Batches of similar length, so that short chat examples do not pay for the longest one in
their batch: a shuffled order, sorted by length within windows of many batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

WINDOW_BATCHES = 50  # batches per sorted window: enough to group, still shuffled across the run


class LengthGroupedSampler(Sampler[int]):
    """Indices for batches of `batch_size` consecutive indices of similar length.

    Each epoch's order depends only on (`seed`, epoch): a resumed run draws the same batches as an
    uninterrupted one (HF sets the epoch through `set_epoch`). The longest batch comes first, so a
    run that cannot fit it fails at once instead of hours in.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order `__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        window = self.batch_size * WINDOW_BATCHES
        grouped: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: -self.lengths[i])
            grouped += [
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            ]
        longest = max(range(len(grouped)), key=lambda b: self.lengths[grouped[b][0]], default=0)
        if grouped:
            grouped[0], grouped[longest] = grouped[longest], grouped[0]
        return iter([i for batch in grouped for i in batch])
