"""Directory archives (`.tar.gz`): what adapters, checkpoints and merged exports are stored as."""

from __future__ import annotations

import tarfile
from pathlib import Path


def pack_dir(source: Path, target: Path) -> Path:
    """Write every file under `source` into the tarball `target`, paths relative to `source`."""
    if not source.is_dir():
        raise FileNotFoundError(f"cannot archive {source}: not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return target


def unpack(archive: Path, target: Path) -> Path:
    """Extract a tarball written by `pack_dir` into `target` (regular files only, no escapes)."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")
    return target
