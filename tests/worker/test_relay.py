"""The relay files between a worker and rank 0: reports replayed in order, control answers read
once (checkpoint) or for good (pause, cancel), "cancel" once the worker is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import NullCallbacks, ProgressEvent
from worker.relay import RELAY_FILE, RelayReader, RelayWriter


class Recorder(NullCallbacks):
    """Keeps every report it is given."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_progress(self, event: ProgressEvent) -> None:
        self.seen.append(event)

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        self.seen.append(("checkpoint", step, path, metrics))

    def on_event(self, event: TrainEvent) -> None:
        self.seen.append(event)


def test_reports_are_replayed_in_order(tmp_path: Path) -> None:
    writer, recorder = RelayWriter(tmp_path, parent_pid=1), Recorder()
    reader = RelayReader(tmp_path, recorder)
    event = TrainEvent(EventKind.RUNTIME, "Training on cpu", {"devices": 2}, "info")
    progress = ProgressEvent(step=1, total_steps=4, epoch=0.25, train_loss=5.5, trained_tokens=9)
    writer.on_event(event)
    writer.on_progress(progress)
    writer.on_checkpoint(1, tmp_path / "checkpoint-1", {"train_loss": 5.5})
    reader.pump()
    assert recorder.seen == [
        event,
        progress,
        ("checkpoint", 1, tmp_path / "checkpoint-1", {"train_loss": 5.5}),
    ]
    reader.pump()
    assert len(recorder.seen) == 3, "a line is replayed once"


def test_a_partly_written_line_waits_for_its_end(tmp_path: Path) -> None:
    recorder = Recorder()
    reader = RelayReader(tmp_path, recorder)
    (tmp_path / RELAY_FILE).write_text('{"type": "checkpoint", "step": 2, ')
    reader.pump()
    assert recorder.seen == []
    with (tmp_path / RELAY_FILE).open("a") as fh:
        fh.write('"path": "p", "metrics": {}}\n')
    reader.pump()
    assert recorder.seen == [("checkpoint", 2, Path("p"), {})]


def test_checkpoint_requests_are_read_once_and_stops_stick(tmp_path: Path) -> None:
    writer, reader = RelayWriter(tmp_path, parent_pid=1), RelayReader(tmp_path, Recorder())
    assert writer.control() == "continue"
    reader.answer("checkpoint")
    assert [writer.control(), writer.control()] == ["checkpoint", "continue"]
    reader.answer("pause")
    reader.answer("continue")
    assert [writer.control(), writer.control()] == ["pause", "pause"]


def test_rank_zero_cancels_when_the_worker_is_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert RelayWriter(tmp_path, parent_pid=child.pid).control() == "cancel"
