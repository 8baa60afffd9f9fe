"""Facts every benchmark records: the machine, the threads, the command that ran it."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_name() -> str:
    """'cpu: <model>, N cores' or the CUDA device name."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {cpu_name()}, {os.cpu_count()} cores"


def environment(threads: int) -> dict[str, Any]:
    """torch version, threads, device and python of this run."""
    import torch

    return {
        "torch": torch.__version__,
        "threads": threads,
        "device": device_name(),
        "python": platform.python_version(),
    }


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces this run."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join([".venv/bin/python", "-m", module, *args])


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
