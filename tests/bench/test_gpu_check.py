"""bench/gpu_check.sh: its CPU dry run (the same steps at tiny sizes) passes, so the one GPU run a
lent machine gets is not spent on a broken script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_passes_every_step(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "mode: dry-run on CPU" in summary
    assert "FAILED" not in summary
    assert (tmp_path / "step.json").is_file()
    assert (tmp_path / "tiny-job" / "adapter").is_dir()
    assert summary.rstrip().endswith("OK")


def test_an_unknown_argument_is_refused() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--fast"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown argument '--fast'" in done.stderr
