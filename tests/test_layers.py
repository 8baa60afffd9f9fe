"""The layer rules of README.md and docs/development.md, checked on every import statement.

The torch-free part of `quaff_core` is named by folders, not by a list of modules: `options/`,
`data/`, `graders/` and the top-level modules. What the API, the store and migrations may use of
`quaff_core` is exactly that part, and that part imports neither torch nor the rest of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "quaff_core"
PACKAGES = ("api", "store", "worker", "infer", "quaff_core", "cli", "bench", "migrations")
TORCH_FREE_FOLDERS = ("options", "data", "graders")
HEAVY = {"torch", "transformers", "peft", "trl", "safetensors", "accelerate", "gguf"}
FORBIDDEN: dict[str, set[str]] = {
    "quaff_core": {"api", "store", "worker", "cli", "infer", "bench", "migrations"},
    "store": {"api", "worker", "cli", "infer", "bench", "fastapi", "celery", *HEAVY},
    "api": {"worker", "cli", "infer", "bench", *HEAVY},
    "worker": {"api", "cli", "infer", "bench"},
    "infer": {"api", "worker", "cli", "bench"},
    "cli": {"bench"},
    "bench": {"cli"},
    "migrations": {"api", "worker", "cli", "infer", "bench", *HEAVY},
}
TORCH_FREE_LAYERS = ("store", "api", "migrations")
# quaff_core's folders, each importing only the folders after it in this order
CORE_ORDER = (
    "training",
    "adapters",
    "calibration",
    "quant",
    "lm",
    "models",
    "graders",
    "data",
    "options",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def torch_free_core() -> set[str]:
    """The torch-free modules of quaff_core: its top-level modules and the torch-free folders."""
    paths = [*CORE.glob("*.py")] + [p for f in TORCH_FREE_FOLDERS for p in (CORE / f).rglob("*.py")]
    return {module_name(p) for p in paths}


def imports(path: Path) -> set[str]:
    """Every module named by an import statement of the file (relative ones excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def core_modules(names: set[str]) -> set[str]:
    """The quaff_core modules among `names` (`from pkg import name` of a non-module is dropped)."""
    return {n for n in names if n.startswith("quaff_core") and _is_module(n)}


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_source_package_has_a_rule() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk == set(PACKAGES) == set(FORBIDDEN)


def test_every_core_folder_has_a_place_in_the_order() -> None:
    folders = {p.parent.name for p in CORE.glob("*/__init__.py")}
    assert folders == set(CORE_ORDER)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(package)
        for name in imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert broken == []


@pytest.mark.parametrize("package", TORCH_FREE_LAYERS)
def test_torch_free_layers_use_only_torch_free_core_modules(package: str) -> None:
    allowed = torch_free_core()
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(package)
        for name in core_modules(imports(path))
        if name not in allowed
    ]
    assert broken == []


def test_the_torch_free_core_imports_no_heavy_library_and_nothing_else_of_the_core() -> None:
    allowed = torch_free_core()
    broken = [
        f"{module} imports {name}"
        for module in sorted(allowed)
        for name in imports(_path(module))
        if name.split(".")[0] in HEAVY or (name in core_modules({name}) and name not in allowed)
    ]
    assert broken == []


def test_core_folders_import_only_folders_below_them() -> None:
    rank = {folder: i for i, folder in enumerate(CORE_ORDER)}
    broken = []
    for folder in CORE_ORDER:
        for path in sources(f"quaff_core/{folder}"):
            for name in core_modules(imports(path)):
                target = name.split(".")[1] if name.count(".") else None
                if target in rank and rank[target] < rank[folder]:
                    broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert broken == []


def test_the_torch_free_set_is_what_the_folders_say() -> None:
    free = torch_free_core()
    assert {"quaff_core.options.spec", "quaff_core.data.jsonl", "quaff_core.errors"} <= free
    assert "quaff_core.quant.linear" not in free


def _path(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
