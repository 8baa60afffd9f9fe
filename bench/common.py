"""Facts every benchmark records: the machine, the threads, the command that ran it."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_class() -> str:
    """The CPU's class for int8 and bf16 work, from its flags: AMX, AVX512 with VNNI/BF16,
    AVX-VNNI (256-bit) or AVX2 only."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    parts = []
    if "amx_int8" in flags:
        parts.append("AMX")
    if "avx512f" in flags:
        parts.append("AVX512")
        parts += [
            name
            for flag, name in (("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"))
            if flag in flags
        ]
    elif "avx_vnni" in flags:
        parts.append("AVX-VNNI")
    elif "avx2" in flags:
        parts.append("AVX2 only")
    return " ".join(parts) or "no AVX2"


def device_name() -> str:
    """'cpu: <model> (<class>), N cores' or the CUDA device name."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {cpu_name()} ({cpu_class()}), {os.cpu_count()} cores"


def source_commit() -> str | None:
    """The git commit of the code that ran: `git rev-parse HEAD`, else $QUAFF_BENCH_COMMIT."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    return os.environ.get("QUAFF_BENCH_COMMIT") or None


def environment(threads: int) -> dict[str, Any]:
    """torch version, threads, device, python and code commit of this run."""
    return {
        "torch": torch.__version__,
        "threads": threads,
        "device": device_name(),
        "python": platform.python_version(),
        "commit": source_commit(),
    }


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces this run."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join([".venv/bin/python", "-m", module, *args])


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
