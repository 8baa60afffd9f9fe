"""Provenance facts of a base's weights: the GGUF file type is read once per file version."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import pytest

from quaff_core.models import provenance


def write_gguf(path: Path, file_type: gguf.LlamaFileType) -> None:
    """A GGUF file with metadata only (no tensors)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(int(file_type))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_the_gguf_file_type_is_parsed_once_per_file_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.gguf"
    write_gguf(path, gguf.LlamaFileType.MOSTLY_Q8_0)
    reads: list[str] = []
    real = gguf.GGUFReader

    def counted(name: str) -> gguf.GGUFReader:
        reads.append(name)
        return real(name)

    monkeypatch.setattr(gguf, "GGUFReader", counted)
    assert provenance.gguf_quantization(path) == "Q8_0"
    assert provenance.gguf_quantization(path) == "Q8_0"
    assert len(reads) == 1
    write_gguf(path, gguf.LlamaFileType.MOSTLY_F16)  # a new version of the file
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert provenance.gguf_quantization(path) == "F16"
    assert len(reads) == 2
