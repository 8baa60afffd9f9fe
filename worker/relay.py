"""The files between a worker and the ranks of its multi-device job (one host, one directory).

Rank 0 appends its reports (phase events, progress, checkpoints) to `relay.jsonl` as JSON lines;
the worker replays them into its store callbacks. The worker writes its answer to `control()` to
`control.json` (atomically); rank 0 reads it between steps and broadcasts it to the other ranks.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import CONTROLS, Control, ProgressEvent, TrainCallbacks

RELAY_FILE = "relay.jsonl"
CONTROL_FILE = "control.json"


def _alive(pid: int) -> bool:
    """Whether process `pid` still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RelayWriter:
    """Rank 0's `TrainCallbacks`: reports become relay lines; `control()` reads the worker's
    answer, and is "cancel" once the worker (`parent_pid`) is gone (no orphan training)."""

    def __init__(self, directory: Path, parent_pid: int) -> None:
        self.directory, self.parent_pid = directory, parent_pid
        self.seen_checkpoint = 0

    def _append(self, record: dict[str, Any]) -> None:
        with (self.directory / RELAY_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()

    def on_progress(self, event: ProgressEvent) -> None:
        """One progress line."""
        self._append({"type": "progress", **asdict(event)})

    def on_checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        """One checkpoint line (the directory stays where rank 0 wrote it)."""
        self._append({"type": "checkpoint", "step": step, "path": str(path), "metrics": metrics})

    def on_event(self, event: TrainEvent) -> None:
        """One phase-event line."""
        self._append(
            {
                "type": "event",
                "kind": str(event.kind),
                "message": event.message,
                "data": dict(event.data),
                "level": event.level,
            }
        )

    def control(self) -> Control:
        """The worker's stop answer; else "checkpoint" once per new request; else "continue"."""
        if not _alive(self.parent_pid):
            return "cancel"
        try:
            answer = json.loads((self.directory / CONTROL_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "continue"
        if answer["stop"] != "continue":
            return str(answer["stop"])  # type: ignore[return-value]
        if answer["checkpoint"] > self.seen_checkpoint:
            self.seen_checkpoint = answer["checkpoint"]
            return "checkpoint"
        return "continue"


class RelayReader:
    """The worker's side: replays rank 0's lines into `target` and writes its control answers."""

    def __init__(self, directory: Path, target: TrainCallbacks) -> None:
        self.directory, self.target = directory, target
        self.offset = 0
        self.checkpoints = 0
        self.stop: Control = "continue"

    def pump(self) -> None:
        """Replay every complete line written since the last call."""
        path = self.directory / RELAY_FILE
        if not path.exists():
            return
        with path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            self._replay(json.loads(line))

    def _replay(self, record: dict[str, Any]) -> None:
        kind = record.pop("type")
        if kind == "progress":
            self.target.on_progress(ProgressEvent(**record))
        elif kind == "checkpoint":
            self.target.on_checkpoint(record["step"], Path(record["path"]), record["metrics"])
        else:
            event = TrainEvent(
                EventKind(record["kind"]), record["message"], record["data"], record["level"]
            )
            self.target.on_event(event)

    def answer(self, decision: Control) -> None:
        """Publish `decision`: a stop sticks; "checkpoint" asks for one more checkpoint."""
        if decision not in CONTROLS:
            raise ValueError(f"control() must return one of {CONTROLS}, got {decision!r}")
        if decision == "checkpoint":
            self.checkpoints += 1
        elif decision != "continue":
            self.stop = decision
        payload = json.dumps({"stop": self.stop, "checkpoint": self.checkpoints})
        staging = self.directory / f".{CONTROL_FILE}.partial"
        staging.write_text(payload, encoding="utf-8")
        os.replace(staging, self.directory / CONTROL_FILE)
