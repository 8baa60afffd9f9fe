"""Python graders in the sandbox: scores per sample, the user's exception as that sample's error,
and no network, no hidden data, no fork bomb and no endless loop getting through."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from quaff_core.graders import registry
from quaff_core.graders.sandbox import SandboxLimits, unshare_works
from quaff_core.graders.templates import namespace

pytestmark = pytest.mark.skipif(not unshare_works(), reason="needs Linux namespaces (unshare)")


def grade(source: str, outputs: list[str], limits: SandboxLimits | None = None) -> list[Any]:
    context = registry.GradingContext(limits=limits or SandboxLimits(cpu_seconds=5))
    spec = registry.validate({"type": "python", "name": "p", "source": source}, context)
    return registry.grade_many(spec, [namespace(o, {"answer": "4"}) for o in outputs], context)


def test_scores_and_a_raising_sample_is_that_samples_error() -> None:
    source = (
        "def grade(sample, item):\n"
        "    if sample['output_text'] == 'boom':\n"
        "        raise ValueError('bad sample')\n"
        "    return float(sample['output_text'] == item['answer'])\n"
    )
    ok, wrong, boom = grade(source, ["4", "5", "boom"])
    assert (ok.score, wrong.score) == (1.0, 0.0)
    assert boom.error == "python_grader_runtime_error"
    assert "ValueError: bad sample" in boom.detail


def test_no_network() -> None:
    source = (
        "import _socket\n"
        "def grade(sample, item):\n"
        "    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        "    s.settimeout(2)\n"
        "    s.connect(('1.1.1.1', 53))\n"
        "    return 1.0\n"
    )
    [outcome] = grade(source, ["x"])
    assert outcome.error == "python_grader_runtime_error"
    assert "unreachable" in outcome.detail


def test_no_data_directory_and_an_empty_working_directory() -> None:
    with tempfile.TemporaryDirectory() as name:
        data = Path(name)
        data.chmod(0o755)  # readable by anyone: only the sandbox's mount hides it
        (data / "api-key").write_text("sk-secret")
        source = (
            "import os\n"
            "def grade(sample, item):\n"
            f"    return float(len(os.listdir({name!r})) + len(os.listdir('.')))\n"
        )
        limits = SandboxLimits(cpu_seconds=5, hidden_paths=(name,))
        [outcome] = grade(source, ["x"], limits)
        assert (outcome.score, outcome.error) == (0.0, None)
        [seen] = grade(source, ["x"])  # not hidden: the same code sees the file
        assert seen.score == 1.0


def test_a_fork_bomb_is_contained() -> None:
    source = (
        "import posix\n"
        "def grade(sample, item):\n"
        "    while True:\n"
        "        try:\n"
        "            posix.fork()\n"
        "        except OSError:\n"
        "            pass\n"
    )
    [outcome] = grade(source, ["x"], SandboxLimits(cpu_seconds=2, wall_seconds=3))
    assert outcome.error in ("unresponsive_reward_error", "python_grader_runtime_error")
    left = subprocess.run(["pgrep", "-u", "nobody", "-f", "sandbox_runner"], check=False)
    assert left.returncode == 1  # no process of the sandbox is left


def test_an_endless_loop_is_stopped() -> None:
    source = "def grade(sample, item):\n    while True:\n        pass\n"
    [outcome] = grade(source, ["x"], SandboxLimits(cpu_seconds=1, wall_seconds=3))
    assert outcome.error == "unresponsive_reward_error"


def test_memory_is_limited() -> None:
    source = "def grade(sample, item):\n    return float(len(bytearray(4 * 1024 ** 3)))\n"
    [outcome] = grade(source, ["x"], SandboxLimits(cpu_seconds=5, memory_mb=512))
    assert outcome.error == "python_grader_runtime_error"
    assert "MemoryError" in outcome.detail
