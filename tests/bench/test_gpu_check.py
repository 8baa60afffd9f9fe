"""bench/gpu_check.sh: its CPU dry run (the same steps at tiny sizes) passes, so the one GPU run a
lent machine gets is not spent on a broken script."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
PACKAGES = ROOT / "bench" / "gpu_check_packages.txt"
TREE_LIMIT = 64 * 1024 * 1024  # what travels to the GPU machine with the tree


def package_list(key: str) -> set[str]:
    """The `key:` line of bench/gpu_check_packages.txt."""
    for line in PACKAGES.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return set(line.split(":", 1)[1].split())
    raise AssertionError(f"{PACKAGES} has no '{key}:' line")


def module_file(name: str) -> Path | None:
    """The repository file of module `name`, or None when it is not one of ours."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Every module an `import` / `from ... import` of `path` names (function bodies too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def script_modules() -> set[str]:
    """The repository modules gpu_check.sh runs: `-m bench.x` and its python heredocs."""
    text = SCRIPT.read_text()
    found = set(re.findall(r"-m (bench\.\w+)", text))
    found.update(re.findall(r"^from (\w+(?:\.\w+)*) import", text, re.MULTILINE))
    return found


def third_party_closure() -> set[str]:
    """Distributions imported by the script's modules and every repository module they import."""
    todo, seen, external = list(script_modules()), set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            top = name.split(".")[0]
            if module_file(top) is None and top not in sys.stdlib_module_names:
                external.add(top)
            continue
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(imported_names(path))
    dists = importlib.metadata.packages_distributions()
    return {d for top in external for d in dists.get(top, [top])}


def test_the_check_needs_only_what_the_gpu_machine_provides() -> None:
    needed = third_party_closure()
    assert needed == package_list("needed"), "update bench/gpu_check_packages.txt"
    assert needed <= package_list("provided"), needed - package_list("provided")


def test_the_tree_fits_what_travels() -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    size = sum(
        (ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file()
    )
    assert size <= TREE_LIMIT


@pytest.mark.slow
def test_dry_run_passes_every_step(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "mode: dry-run on CPU" in summary
    assert "FAILED" not in summary
    assert "| QuaffLinear int_mm forward |" in (tmp_path / "kernels.md").read_text()
    assert "| llama128 | 1x32 |" in (tmp_path / "ladder.md").read_text()
    assert summary.rstrip().endswith("OK")


def test_an_unknown_argument_is_refused() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--fast"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown argument '--fast'" in done.stderr
