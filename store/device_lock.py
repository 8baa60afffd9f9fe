"""A cross-process turnstile so training and inference take turns on one device.

Two `flock` files per device and host: whoever wants the device passes the gate, takes the
device lock, and lets the gate go. A trainer that waits for the device holds the gate
meanwhile, so inference cannot take the device again before training has had a turn. Inference
holds the device for a whole request (interactive); training yields to a waiter within its
step, at layer granularity (`worker.device_share`).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import time
from pathlib import Path
from typing import IO


def lock_dir(data_dir: Path) -> Path:
    """Where the lock files live (inside the data directory; one pair per host and device)."""
    return data_dir / "locks"


class DeviceTurnstile:
    """Exclusive, fair-enough use of `device` among the processes of this host."""

    def __init__(self, directory: Path, device: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{socket.gethostname()}-{device}")
        self._gate_path = directory / f"{stem}.gate"
        self._device_path = directory / f"{stem}.device"
        self._device: IO[bytes] | None = None
        self.waited_seconds = 0.0

    @property
    def held(self) -> bool:
        """Whether this object holds the device now."""
        return self._device is not None

    def acquire(self) -> None:
        """Pass the gate and take the device (blocks while another process holds it)."""
        if self._device is not None:
            return
        start = time.monotonic()
        with open(self._gate_path, "ab") as gate:
            fcntl.flock(gate.fileno(), fcntl.LOCK_EX)
            device = open(self._device_path, "ab")  # noqa: SIM115 (held until release)
            fcntl.flock(device.fileno(), fcntl.LOCK_EX)
            fcntl.flock(gate.fileno(), fcntl.LOCK_UN)
        self._device = device
        self.waited_seconds += time.monotonic() - start

    def release(self) -> None:
        """Let the device go."""
        if self._device is None:
            return
        fcntl.flock(self._device.fileno(), fcntl.LOCK_UN)
        self._device.close()
        self._device = None

    def contended(self) -> bool:
        """Whether another process is at the gate (waiting for the device) right now."""
        fd = os.open(self._gate_path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def yield_if_wanted(self) -> None:
        """Between steps: hand the device over if someone waits for it, then take it back."""
        if self._device is not None and self.contended():
            self.release()
            self.acquire()


def lock_name(setting: str, has_cuda: bool) -> str:
    """The physical device a device setting means here: `cpu` or `cuda:N` (auto/cuda: GPU 0)."""
    if setting == "cpu" or not has_cuda:
        return "cpu"
    return setting if setting.startswith("cuda:") else "cuda:0"
