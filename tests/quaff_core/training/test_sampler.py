"""LengthGroupedSampler: every index once, batches of similar length, an order fixed by seed and
epoch (so a resumed run draws the batches an uninterrupted one does)."""

from __future__ import annotations

import random

from quaff_core.training.sampler import LengthGroupedSampler


def _padding(order: list[int], lengths: list[int], batch: int) -> int:
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_batches_group_similar_lengths_and_cover_every_index() -> None:
    lengths = [random.Random(i).randint(10, 500) for i in range(400)]
    sampler = LengthGroupedSampler(lengths, batch_size=4, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(400))
    shuffled = list(range(400))
    random.Random(0).shuffle(shuffled)
    assert _padding(order, lengths, 4) < _padding(shuffled, lengths, 4) / 4
    first = order[:4]
    assert max(lengths[i] for i in first) == max(lengths)  # the longest batch first


def test_order_depends_only_on_seed_and_epoch() -> None:
    lengths = [random.Random(i).randint(5, 9) for i in range(1000)]
    a, b = LengthGroupedSampler(lengths, 4, seed=3), LengthGroupedSampler(lengths, 4, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(LengthGroupedSampler(lengths, 4, seed=4)) != list(b)
