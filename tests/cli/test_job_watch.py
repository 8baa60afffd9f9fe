"""`quaff jobs watch` output: a bar redrawn on a terminal, plain lines in files; ETA from steps."""

from __future__ import annotations

import io

from cli.common import clock
from cli.job_watch import EventPrinter, StepRate, bar, metrics_text


def metrics(step: int, at: int, **data: float) -> dict[str, object]:
    return {
        "type": "metrics",
        "created_at": at,
        "data": {"step": step, "total_steps": 10, "train_loss": 2.0, **data},
    }


def test_clock() -> None:
    assert (clock(0), clock(75.4), clock(3725), clock(-5)) == ("0:00", "1:15", "1:02:05", "0:00")


def test_step_rate_gives_the_time_left() -> None:
    rate = StepRate(window=3)
    assert rate.seconds_left(10) is None
    rate.add(100, 1)
    rate.add(100, 2)
    assert rate.seconds_left(10) is None  # no time has passed yet
    rate.add(104, 3)
    assert rate.seconds_left(10) == 14.0  # 2 steps in 4 s, 7 to go
    rate.add(106, 4)  # the window keeps the last 3: (100, 2) .. (106, 4)
    assert rate.seconds_left(10) == 18.0
    rate.add(107, 2)  # resumed from a checkpoint: start measuring again
    assert rate.seconds_left(10) is None


def test_metrics_text_and_bar() -> None:
    data = {"step": 5, "total_steps": 10, "train_loss": 1.23456, "train_mean_token_accuracy": 0.5}
    data |= {"learning_rate": 0.0002, "tokens_per_second": 812.4}
    assert metrics_text(data, 1.3, 42) == (
        "step 5/10 loss 1.2346 val 1.3000 acc 0.500 lr 2.00e-04 812 tok/s eta 0:42"
    )
    assert metrics_text({"step": 0, "total_steps": None}, None, None) == "step 0/0 eta ?"
    assert bar(data) == f"[{'#' * 15}{'-' * 15}]"


def test_into_a_file_every_event_is_a_plain_line_with_eta_and_validation_loss() -> None:
    out = io.StringIO()
    show = EventPrinter(out)
    show(metrics(1, 100))
    show(metrics(2, 102, valid_loss=1.5, tokens_per_second=300.0))
    show({"type": "message", "level": "info", "message": "Checkpoint saved at step 2"})
    show(metrics(3, 104))
    assert out.getvalue().splitlines() == [
        "step 1/10 loss 2.0000 eta ?",
        "step 2/10 loss 2.0000 val 1.5000 300 tok/s eta 0:16",
        "info: Checkpoint saved at step 2",
        "step 3/10 loss 2.0000 val 1.5000 eta 0:14",  # the last validation loss stays shown
    ]
    assert "\r" not in out.getvalue()


def test_on_a_terminal_the_bar_is_redrawn_and_ended_before_a_message() -> None:
    out = io.StringIO()
    show = EventPrinter(out, tty=True)
    show(metrics(5, 100))
    show(metrics(6, 101))
    show({"type": "message", "level": "warn", "message": "Paused"})
    first = f"[{'#' * 15}{'-' * 15}] step 5/10 loss 2.0000 eta ?"
    second = f"[{'#' * 18}{'-' * 12}] step 6/10 loss 2.0000 eta 0:04"
    assert out.getvalue() == f"\r{first}\r{second}\nwarn: Paused\n"
    show(metrics(7, 102))
    show.close()
    assert out.getvalue().endswith("eta 0:03\n")
