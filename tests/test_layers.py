"""The layer rules of docs/development.md, checked on every import statement of the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "store", "worker", "infer", "quaff_core", "cli", "migrations")
SERVICE = {"api", "store", "worker", "cli", "infer", "bench", "migrations"}
# quaff_core modules that never import torch: what the torch-free layers may use
TORCH_FREE_CORE = {
    "quaff_core",
    "quaff_core.artifacts",
    "quaff_core.bounded_json",
    "quaff_core.catalog",
    "quaff_core.chat_format",
    "quaff_core.config",
    "quaff_core.data",
    "quaff_core.errors",
    "quaff_core.events",
    "quaff_core.examples",
    "quaff_core.formats",
    "quaff_core.generation_request",
    "quaff_core.option",
    "quaff_core.options",
    "quaff_core.templates",
}
FORBIDDEN: dict[str, set[str]] = {
    "quaff_core": SERVICE,
    "store": {"api", "worker", "cli", "infer", "torch", "fastapi", "celery", "transformers"},
    "api": {"worker", "cli", "infer", "torch", "transformers", "peft"},
    "worker": {"api", "cli", "infer"},
    "infer": {"api", "worker", "cli"},
    "migrations": {"api", "worker", "cli", "infer", "torch"},
}
TORCH_FREE = ("store", "api", "migrations")


def imports(path: Path) -> set[str]:
    """Every module named by an import statement of the file (relative ones excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(package)
        for name in imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert broken == []


@pytest.mark.parametrize("package", TORCH_FREE)
def test_torch_free_layers_use_only_torch_free_core_modules(package: str) -> None:
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(package)
        for name in imports(path)
        if name.split(".")[0] == "quaff_core" and name not in TORCH_FREE_CORE
    ]
    assert broken == []


def test_the_torch_free_core_modules_import_only_each_other() -> None:
    broken = [
        f"{module} imports {name}"
        for module in sorted(TORCH_FREE_CORE)
        for name in imports(ROOT / (module.replace(".", "/") + ".py") if "." in module
                            else ROOT / "quaff_core" / "__init__.py")
        if name.split(".")[0] in {"torch", "transformers", "peft", "safetensors"}
        or (name.startswith("quaff_core.") and name not in TORCH_FREE_CORE)
    ]  # fmt: skip
    assert broken == []
