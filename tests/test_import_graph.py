"""The import graph of the source: no cycles between modules, and imports at the top of modules.

Every import statement counts, a function-level one too, so a cycle cannot hide behind a lazy
import. Imports inside functions are allowed only where ruff's PLC0415 is waived in pyproject.toml
(a torch-free process must not load torch or the service's heavy dependencies at start-up).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "store", "worker", "infer", "quaff_core", "cli", "bench", "migrations")


def module_name(path: Path) -> str:
    """`quaff_core/quant/linear.py` -> `quaff_core.quant.linear`; an `__init__` -> its package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """Every first-party module of the source packages (tests excluded), by dotted name."""
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported(tree: ast.Module, modules: dict[str, Path], here: str) -> Iterator[str]:
    """The first-party modules one module imports, by any import statement anywhere in it."""
    package = here if modules[here].name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield from _known(name if name in modules else base, modules)


def _known(name: str, modules: dict[str, Path]) -> Iterator[str]:
    """The longest first-party module that `name` names or lies in, if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            yield candidate
            return


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {
        name: set(imported(ast.parse(path.read_text(encoding="utf-8")), modules, name)) - {name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_source_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_a_cycle_is_found_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_relative_and_from_package_imports_are_resolved() -> None:
    modules = {"p": ROOT / "p/__init__.py", "p.x": ROOT / "p/x.py", "p.y": ROOT / "p/y.py"}
    tree = ast.parse("from . import y\nfrom p import x\n")
    assert set(imported(tree, modules, "p.x")) == {"p.y", "p.x"}


def test_every_package_folder_lies_in_the_graph() -> None:
    graph = import_graph()
    assert "quaff_core.quant.linear" in graph
    assert "quaff_core.training.train" in graph["worker.ranks"] | graph["cli.train"]


def test_imports_inside_functions_are_waived_file_by_file() -> None:
    """ruff's PLC0415 is on, and each waiver names one existing file (no glob, no package)."""
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"][
        "lint"
    ]
    assert "PLC0415" in lint["select"]
    waived = [path for path, codes in lint["per-file-ignores"].items() if "PLC0415" in codes]
    assert waived
    assert [p for p in waived if not (ROOT / p).is_file()] == []
