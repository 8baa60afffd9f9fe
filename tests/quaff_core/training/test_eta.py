"""The ETA: the recent step pace, plus the evaluations and saves still due (those of the logged
step and the adapter's save included), shown from the first step."""

from __future__ import annotations

import pytest

from quaff_core.training.eta import DEFAULT_SAVE_SECONDS, FORWARD_SHARE, EtaClock, due


@pytest.mark.parametrize(
    ("step", "total", "every", "expected"),
    [
        (0, 10, 0, 1),
        (10, 10, 0, 1),  # the last step's log comes before its evaluation and save
        (11, 10, 0, 0),
        (0, 10, 5, 2),
        (5, 10, 5, 2),
        (6, 10, 5, 1),
        (10, 10, 5, 1),
        (3, 10, 4, 3),
        (8, 10, 4, 2),
        (9, 10, 4, 1),
    ],
)
def test_events_still_due(step: int, total: int, every: int, expected: int) -> None:
    assert due(step, total, every) == expected


def test_shown_from_the_first_step_then_at_the_pace_of_later_steps() -> None:
    clock = EtaClock(eval_every=0, save_every=0, eval_batches=4, has_eval=True)
    clock.start(0.0)
    assert clock.remaining(0, 10) is None
    clock.step_done(3.0)  # the first step's time stands in for the pace
    # nine steps, the final evaluation (4 batches), the last checkpoint and the adapter
    expected = 3.0 * 9 + 3.0 * 4 * FORWARD_SHARE + 2 * DEFAULT_SAVE_SECONDS
    assert clock.remaining(1, 10) == pytest.approx(expected)
    clock.step_done(5.0)
    clock.step_done(7.0)
    pace = 2.0
    expected = pace * 7 + pace * 4 * FORWARD_SHARE + 2 * DEFAULT_SAVE_SECONDS
    assert clock.remaining(3, 10) == pytest.approx(expected)


def test_measured_evaluations_and_saves_replace_the_estimates() -> None:
    clock = EtaClock(eval_every=5, save_every=5, eval_batches=4, has_eval=True)
    clock.start(0.0)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        clock.step_done(t)
    clock.eval_done(8.0)
    clock.save_done(9.5)
    # 4 steps left at 1 s, one more evaluation (3 s), one more checkpoint and the adapter (1.5 s)
    assert clock.remaining(6, 10) == pytest.approx(4 * 1.0 + 3.0 + 1.5 + 1.5)
    # logged at the last step: its evaluation, checkpoint and the adapter are still ahead
    assert clock.remaining(10, 10) == pytest.approx(3.0 + 1.5 + 1.5)
