"""Dependencies point one way: api → store; worker, infer → store + quaff_core; never sideways."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "api": {"worker", "infer", "cli", "torch", "transformers", "peft"},
    "infer": {"api", "worker", "cli"},
    "worker": {"api", "infer", "cli"},
    "store": {"api", "worker", "infer", "cli", "torch", "transformers", "peft"},
    "quaff_core": {"api", "worker", "infer", "store", "cli"},
}


def imported(path: Path) -> set[str]:
    """Top-level packages a module imports (anywhere in it, functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in wrong.items() if v} == {}
