"""Running users' `grade(sample, item)` code: a separate process per batch, with no network, an
empty temporary directory as its home, a scrubbed environment, the data directory hidden, an
unprivileged user when started as root, and CPU, memory, process and wall-clock limits.

The isolation comes from Linux namespaces (`unshare`: user, network, mount and PID), so the
child has only a loopback interface that is down and cannot see or signal other processes; the
PID namespace ends with the child, fork bombs included. Where namespaces are not available,
python graders are refused rather than run without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

NOBODY = 65534
_RUNNER = Path(__file__).with_name("sandbox_runner.py")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed batch: CPU seconds and wall seconds per sample, memory in MiB."""

    cpu_seconds: int = 10
    wall_seconds: float = 15.0
    memory_mb: int = 1024
    max_processes: int = 32
    hidden_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1 or self.wall_seconds <= 0 or self.memory_mb < 64:
            raise ValueError(f"sandbox limits out of range: {self}")


class SandboxUnavailableError(RuntimeError):
    """This host cannot isolate a python grader (no `unshare` or no user namespaces)."""


@cache
def unshare_works() -> bool:
    """Whether `unshare` can make user, network, mount and PID namespaces here."""
    tool = shutil.which("unshare")
    if tool is None:
        return False
    try:
        done = subprocess.run(
            [tool, *_unshare_flags(), "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _unshare_flags() -> list[str]:
    """Network, mount and PID namespaces; a user namespace too unless we are root (then the
    runner itself becomes `nobody` once Python is up)."""
    user = [] if os.getuid() == 0 else ["--user", "--map-root-user"]
    return [*user, "--net", "--mount", "--pid", "--fork"]


def _limits(limits: SandboxLimits, n: int) -> Any:
    def apply() -> None:
        os.setsid()
        cpu = limits.cpu_seconds * max(1, n)
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _command(limits: SandboxLimits) -> list[str]:
    """unshare, then a shell that hides the given paths under empty tmpfs mounts, then Python."""
    hidden = [p for p in limits.hidden_paths if Path(p).is_dir()]
    hide = "".join(f' && mount -t tmpfs -o size=1k,ro none "{p}"' for p in hidden)
    script = f'mount -t proc proc /proc{hide} && exec "$0" -I "$1" "$2"'
    drop = str(NOBODY) if os.getuid() == 0 else "-"
    return [
        str(shutil.which("unshare")),
        *_unshare_flags(),
        "--kill-child",
        "/bin/sh",
        "-c",
        script,
        sys.executable,
        str(_RUNNER),
        drop,
    ]


def run_batch(
    source: str, cases: list[dict[str, Any]], limits: SandboxLimits
) -> list[dict[str, Any]]:
    """Each case's `{"score": float}` or `{"error": str, "kind": ...}`; SandboxUnavailableError
    when this host cannot isolate the code."""
    if not unshare_works():
        raise SandboxUnavailableError(
            "python graders need Linux user namespaces (`unshare`), which this host lacks"
        )
    payload = json.dumps({"source": source, "cases": cases}).encode()
    cpu_before = _children_cpu()
    with tempfile.TemporaryDirectory(prefix="quaff-grader-") as home:
        os.chmod(home, 0o777)  # -- the empty working directory of `nobody`
        env = {"HOME": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": home}
        process = subprocess.Popen(
            _command(limits),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=home,
            env=env,
            preexec_fn=_limits(limits, len(cases)),
        )
        try:
            out, err = process.communicate(payload, timeout=limits.wall_seconds * len(cases))
        except subprocess.TimeoutExpired:
            _kill(process)
            return [_unresponsive(limits)] * len(cases)
    spent = _children_cpu() - cpu_before
    if process.returncode != 0 and spent >= limits.cpu_seconds * len(cases):
        return [_unresponsive(limits)] * len(cases)  # stopped by its CPU-time limit
    return _results(out, err, process.returncode, len(cases))


def _children_cpu() -> float:
    """CPU seconds of this process's ended (and waited-for) descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def _unresponsive(limits: SandboxLimits) -> dict[str, Any]:
    return {
        "error": f"the grader did not finish within {limits.wall_seconds:g} s or "
        f"{limits.cpu_seconds} CPU seconds a sample",
        "kind": "unresponsive",
    }


def _results(out: bytes, err: bytes, code: int, n: int) -> list[dict[str, Any]]:
    try:
        results = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        tail = err.decode(errors="replace").strip()[-500:]
        kind = "unresponsive" if code in (-9, -24, 137, 152) else "server"
        return [{"error": f"the grader process ended (exit {code}): {tail}", "kind": kind}] * n
    if not isinstance(results, list) or len(results) != n:
        return [{"error": "the grader process answered no result per sample", "kind": "server"}] * n
    return results
