"""The processes `quaff serve` starts die with it, and a restart finds any that survived.

Each child asks the kernel for SIGTERM when its parent dies (Linux `PR_SET_PDEATHSIG`), so a
`kill -9` of `quaff serve` stops its worker (which hands its job back) and its inference node.
`quaff serve` also records itself and its children, with their start times, in
DATA_DIR/serve-children.json; the next `quaff serve` on that directory refuses to start beside a
live one, and stops the children of a dead one that are still running (on systems without
`PR_SET_PDEATHSIG`, or a child that ignored the signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cli.common import CliError
from store.settings import Settings

logger = logging.getLogger(__name__)

CHILDREN_FILE = "serve-children.json"
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the child get SIGTERM when the process starting it dies (and at
    once, should it already have died); None where Linux's prctl is missing."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def start_time(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks after boot), None when it is gone or a
    zombie; with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def _alive(entry: dict[str, int]) -> bool:
    return start_time(entry["pid"]) == entry["started"]


class ChildRecord:
    """DATA_DIR/serve-children.json: this `quaff serve` and the children it runs now."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.data_dir / CHILDREN_FILE
        self._lock = threading.Lock()
        me = os.getpid()
        self._serve = {"pid": me, "started": start_time(me) or 0}
        self._children: dict[int, dict[str, int]] = {}

    def add(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        """Record a started child (and forget children that have ended); returns it."""
        with self._lock:
            self._children = {p: e for p, e in self._children.items() if _alive(e)}
            started = start_time(process.pid)
            if started is not None:
                self._children[process.pid] = {"pid": process.pid, "started": started}
            self._write()
        return process

    def _write(self) -> None:
        body = {"serve": self._serve, "children": list(self._children.values())}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body), encoding="utf-8")
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """`quaff serve` stopped its children itself: nothing to find next time."""
        self.path.unlink(missing_ok=True)


def stop_survivors(settings: Settings, stop_seconds: float) -> list[int]:
    """Before a `quaff serve` starts: CliError while the recorded one still runs; otherwise stop
    (SIGTERM, then SIGKILL after `stop_seconds`) the recorded children that outlived it and
    return their pids."""
    path = settings.data_dir / CHILDREN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        serve, children = record["serve"], record["children"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if _alive(serve):
        raise CliError(
            f"another quaff serve (pid {serve['pid']}) runs on {settings.data_dir}; stop it "
            "first (two would train two jobs at once on the same device)"
        )
    survivors = [c for c in children if _alive(c)]
    for child in survivors:
        logger.warning("stopping pid %d, left running by a quaff serve that died", child["pid"])
        _signal_group(child["pid"], signal.SIGTERM)
    deadline = time.monotonic() + stop_seconds
    while any(_alive(c) for c in survivors) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    for child in survivors:
        if _alive(child):
            _signal_group(child["pid"], signal.SIGKILL)
    path.unlink(missing_ok=True)
    return [c["pid"] for c in survivors]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group a child leads (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
