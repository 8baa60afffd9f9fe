"""Blob store: atomic writes with checksums, the size limit, generated keys only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from store.blobs import CHUNK, BlobDamagedError, BlobStore, BlobTooLargeError


def test_write_stores_bytes_and_checksum(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    info = blobs.write("files/file-1.jsonl", [b"abc", b"def"])
    assert info.bytes == 6
    assert info.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert blobs.read_bytes("files/file-1.jsonl") == b"abcdef"
    assert b"".join(blobs.iter_range("files/file-1.jsonl", 2, 3)) == b"cd"
    assert list((tmp_path / "files").iterdir()) == [tmp_path / "files" / "file-1.jsonl"]


def test_write_past_the_limit_leaves_nothing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(BlobTooLargeError, match="limit of 4 bytes"):
        blobs.write("files/file-2.jsonl", [b"abc", b"de"], max_bytes=4)
    assert not blobs.exists("files/file-2.jsonl")
    assert list((tmp_path / "files").iterdir()) == []


def test_failed_write_keeps_the_previous_blob(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    blobs.write_bytes("adapters/a.tar.gz", b"old")

    def chunks() -> list[bytes]:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        blobs.write("adapters/a.tar.gz", chunks())
    assert blobs.read_bytes("adapters/a.tar.gz") == b"old"


@pytest.mark.parametrize("key", ["../etc/passwd", "files/../../x", "/abs/path", "noslash", ""])
def test_only_generated_keys_are_paths(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        BlobStore(tmp_path).path(key)


def test_delete_removes_the_blob(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    blobs.write_bytes("files/f.jsonl", b"x")
    blobs.delete("files/f.jsonl")
    assert not blobs.exists("files/f.jsonl")
    blobs.delete("files/f.jsonl")  # already gone: logged, not raised
    assert not blobs.exists("files/f.jsonl")


def test_iter_verified_gives_the_blob_when_it_matches(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    data = bytes(range(256)) * 9000  # more than two chunks
    info = blobs.write_bytes("files/file-v.jsonl", data)
    assert b"".join(blobs.iter_verified(info.key, info.bytes, info.sha256)) == data


def test_iter_verified_refuses_a_missing_or_truncated_blob_before_reading(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    info = blobs.write_bytes("files/file-t.jsonl", b"abcdef")
    with pytest.raises(BlobDamagedError, match="6 bytes on disk, 5 expected"):
        blobs.iter_verified(info.key, 5, info.sha256)
    blobs.delete(info.key)
    with pytest.raises(BlobDamagedError, match="missing"):
        blobs.iter_verified(info.key, info.bytes, info.sha256)


def test_iter_verified_holds_the_last_chunk_back_when_the_sha256_differs(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    data = b"x" * (CHUNK * 2 + 10)
    info = blobs.write_bytes("files/file-c.jsonl", data)
    path = blobs.path(info.key)
    path.write_bytes(data[:-1] + b"y")  # same size, one byte changed
    chunks = blobs.iter_verified(info.key, info.bytes, info.sha256)
    given = [next(chunks), next(chunks)]
    with pytest.raises(BlobDamagedError, match="sha256"):
        next(chunks)
    assert sum(map(len, given)) == CHUNK * 2  # the last chunk was never given out
