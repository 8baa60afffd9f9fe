"""`quaff serve`'s children die with it; a restart stops survivors or refuses to double."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.children import CHILDREN_FILE, ChildRecord, die_with_parent, start_time, stop_survivors
from cli.common import CliError
from store.settings import Settings
from tests.processes import wait_for

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").is_file(), reason="needs Linux /proc and prctl"
)
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _gone(pid: int) -> bool:
    return start_time(pid) is None


@pytest.mark.slow
def test_a_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "from cli.children import die_with_parent\n"
        f"child = subprocess.Popen({SLEEPER!r}, preexec_fn=die_with_parent())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert not _gone(child)
    parent.kill()  # kill -9: no clean-up code runs in the parent
    parent.wait()
    wait_for("the child to die with its parent", lambda: _gone(child), timeout=30)


@pytest.mark.slow
def test_a_restart_stops_the_children_a_dead_serve_left(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    survivor = subprocess.Popen(SLEEPER, start_new_session=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = {
        "serve": {"pid": gone.pid, "started": 1},  # a serve that is no longer running
        "children": [{"pid": survivor.pid, "started": start_time(survivor.pid)}],
    }
    (tmp_path / CHILDREN_FILE).write_text(json.dumps(record))
    try:
        assert stop_survivors(settings, stop_seconds=10) == [survivor.pid]
        assert survivor.wait(timeout=10) == -signal.SIGTERM
    finally:
        survivor.kill()
    assert not (tmp_path / CHILDREN_FILE).exists()
    assert stop_survivors(settings, stop_seconds=1) == []


@pytest.mark.slow
def test_a_restart_beside_a_live_serve_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    record = ChildRecord(settings)  # this process plays the live serve
    child = record.add(subprocess.Popen(SLEEPER, preexec_fn=die_with_parent()))
    try:
        with pytest.raises(CliError, match=f"another quaff serve \\(pid {os.getpid()}\\) runs"):
            stop_survivors(settings, stop_seconds=1)
        assert child.poll() is None  # nothing of the live one was touched
    finally:
        child.kill()
        child.wait()
    record.clear()
    assert not (tmp_path / CHILDREN_FILE).exists()
