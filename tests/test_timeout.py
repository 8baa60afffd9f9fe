"""The time limit per test (pyproject.toml): a hung test fails, named, and the run goes on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HUNG = """
import subprocess
import sys

import pytest


@pytest.fixture
def child():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()
    print(f"child {process.pid} stopped")


def test_hangs(child):
    child.wait()


def test_after_it():
    pass
"""


def test_a_hung_test_fails_with_its_name_and_its_fixtures_clean_up(tmp_path: Path) -> None:
    test_file = tmp_path / "test_hung.py"
    test_file.write_text(HUNG, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
         str(tmp_path), "-o", "timeout=2", "-p", "no:cacheprovider", "-s", str(test_file)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "FAILED test_hung.py::test_hangs - Failed: Timeout" in out
    assert "1 failed, 1 passed" in out
    assert "stopped" in out  # the fixture's teardown ran: the child process is gone
