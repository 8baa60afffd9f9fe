"""Artifacts on disk: written atomically (temp file, fsync, rename) with a sha256 checksum."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from store.blob_refs import referenced

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^[a-z0-9_-]+(/[A-Za-z0-9_.-]+)+$")
CHUNK = 1024 * 1024


class BlobTooLargeError(ValueError):
    """The data passed the size limit while it was being written; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"blob exceeds the limit of {limit} bytes")
        self.limit = limit


class BlobDamagedError(Exception):
    """A blob is missing, or its size or sha256 differs from what its row recorded."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"blob {key} is damaged: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class BlobInfo:
    """Where a blob was stored, its size and its sha256 (hex)."""

    key: str
    bytes: int
    sha256: str


def _read_chunks(handle: BinaryIO, remaining: int | None) -> Iterator[bytes]:
    """Yield chunks until `remaining` bytes (or EOF) were read; closes the handle."""
    with handle:
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _verified_chunks(handle: BinaryIO, key: str, size: int, sha256: str) -> Iterator[bytes]:
    """Yield the chunks of `handle`, holding the last one back until the size and sha256 match;
    BlobDamagedError (nothing more yielded) when they do not."""
    digest, seen, held = hashlib.sha256(), 0, None
    for chunk in _read_chunks(handle, None):
        digest.update(chunk)
        seen += len(chunk)
        if seen > size:
            break
        if held is not None:
            yield held
        held = chunk
    if seen != size:
        read = seen if seen <= size else "more"
        raise BlobDamagedError(key, f"{read} bytes read, {size} expected")
    if digest.hexdigest() != sha256:
        raise BlobDamagedError(key, "the sha256 of its bytes differs from the recorded one")
    if held is not None:
        yield held


class BlobWriter:
    """Writes a temp file next to the target, hashing as it goes; `commit()` renames it in place."""

    def __init__(self, target: Path, key: str, *, max_bytes: int | None) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        self._out = os.fdopen(fd, "wb")
        self._tmp = Path(tmp_name)
        self._target = target
        self._key = key
        self._digest = hashlib.sha256()
        self._max_bytes = max_bytes
        self._done = False
        self.bytes = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk; past the limit the temp file is removed and BlobTooLargeError raised."""
        self.bytes += len(chunk)
        if self._max_bytes is not None and self.bytes > self._max_bytes:
            self.abort()
            raise BlobTooLargeError(self._max_bytes)
        self._digest.update(chunk)
        self._out.write(chunk)

    def commit(self) -> BlobInfo:
        """Flush, fsync and atomically rename into place."""
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        os.replace(self._tmp, self._target)
        self._done = True
        return BlobInfo(key=self._key, bytes=self.bytes, sha256=self._digest.hexdigest())

    def abort(self) -> None:
        """Drop the temp file; the target is untouched."""
        if not self._done:
            self._out.close()
            self._tmp.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class BlobStore:
    """Blobs under one root directory; keys are generated (`kind/id.ext`), never user filenames."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file path of `key`; refuses anything that is not a generated key."""
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}: keys are generated as 'kind/id.ext'")
        return self.root / key

    def writer(self, key: str, *, max_bytes: int | None = None) -> BlobWriter:
        """An incremental atomic writer for `key` (use as a context manager, then `commit()`)."""
        return BlobWriter(self.path(key), key, max_bytes=max_bytes)

    def write(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> BlobInfo:
        """Write `chunks` to `key` atomically; raises BlobTooLargeError past `max_bytes`."""
        with self.writer(key, max_bytes=max_bytes) as out:
            for chunk in chunks:
                out.write(chunk)
            return out.commit()

    def write_bytes(self, key: str, data: bytes) -> BlobInfo:
        """Write `data` to `key` atomically."""
        return self.write(key, [data])

    def write_file(self, key: str, source: Path) -> BlobInfo:
        """Copy the file `source` into the store under `key` atomically."""
        with open(source, "rb") as handle:
            return self.write(key, iter(lambda: handle.read(CHUNK), b""))

    def put(self, key: str, source: Path | bytes) -> BlobInfo:
        """Write `source` (bytes, or a file to copy) to `key` atomically."""
        if isinstance(source, bytes):
            return self.write_bytes(key, source)
        return self.write_file(key, source)

    def open(self, key: str) -> BinaryIO:
        """Open a blob for reading."""
        return open(self.path(key), "rb")

    def read_bytes(self, key: str) -> bytes:
        """The whole blob."""
        return self.path(key).read_bytes()

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes `start..end` (inclusive; None = to the end); opened now, read lazily."""
        handle = self.open(key)
        handle.seek(start)
        return _read_chunks(handle, None if end is None else end - start + 1)

    def iter_verified(self, key: str, size: int, sha256: str) -> Iterator[bytes]:
        """The whole blob, checked against its row: the size before anything is read, the sha256
        before the last chunk is given out; BlobDamagedError when missing or different."""
        try:
            found = self.size(key)
            handle = self.open(key)
        except FileNotFoundError:
            raise BlobDamagedError(key, "its file is missing") from None
        if found != size:
            handle.close()
            raise BlobDamagedError(key, f"{found} bytes on disk, {size} expected")
        return _verified_chunks(handle, key, size, sha256)

    def size(self, key: str) -> int:
        """The blob's size in bytes."""
        return self.path(key).stat().st_size

    def exists(self, key: str) -> bool:
        """Whether the blob is on disk."""
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is logged, not an error."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            logger.warning("blob %s was already gone", key)


def commit_with_blob(session: Session, blobs: BlobStore, key: str) -> None:
    """Commit rows that point at the already-written blob `key`; on failure roll back, drop it."""
    try:
        session.commit()
    except BaseException:
        session.rollback()
        blobs.delete(key)
        raise


def delete_with_blob(session: Session, blobs: BlobStore, row: Any) -> None:
    """Delete `row` (anything with a `blob_key`) and commit, then remove its blob unless another
    row shares it."""
    key: str = row.blob_key
    session.delete(row)
    session.commit()
    delete_unreferenced(session, blobs, [key])


def delete_unreferenced(session: Session, blobs: BlobStore, keys: Iterable[str]) -> list[str]:
    """Remove the blobs among `keys` that no row points at any more; returns the removed keys."""
    keys = list(keys)
    shared = referenced(session, keys)
    removed = [key for key in keys if key not in shared]
    for key in removed:
        blobs.delete(key)
    return removed
