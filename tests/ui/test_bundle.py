"""The committed dashboard build (api/ui_dist) matches ui/, stays small, and its unit tests pass."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from api.routes.ui import UI_DIST
from tests.ui.conftest import npm

# gzip bytes of everything the browser loads (today ~45 kB: Preact ~5, uPlot ~21, our code, CSS).
BUNDLE_BUDGET = 80_000


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_bundle_fits_its_budget() -> None:
    files = _tree(UI_DIST)
    assert "index.html" in files
    assert any(name.endswith(".js") for name in files)
    total = sum(len(gzip.compress(data, 9)) for data in files.values())
    assert total < BUNDLE_BUDGET, f"the dashboard bundle is {total} gzip bytes"


@pytest.mark.slow
def test_committed_bundle_is_built_from_the_source(ui_packages: Path, tmp_path: Path) -> None:
    out = tmp_path / "ui_dist"
    npm("run", "check")
    npm("exec", "--", "vite", "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn")
    built, committed = _tree(out), _tree(UI_DIST)
    assert sorted(built) == sorted(committed), "api/ui_dist is stale: run `make ui` and commit it"
    stale = [name for name in built if built[name] != committed[name]]
    assert not stale, f"api/ui_dist differs from the source in {stale}: run `make ui` and commit it"


@pytest.mark.slow
def test_front_end_unit_tests_pass(ui_packages: Path) -> None:
    done = npm("test", "--", "--reporter=dot")
    assert "passed" in done.stdout
