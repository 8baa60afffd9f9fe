"""The dashboard's test tools: ui/'s npm packages (from its lock file) and a headless chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui"


def npm(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run npm in ui/; fail the test with its output when it fails."""
    done = subprocess.run(
        ["npm", *argv], cwd=UI, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"npm {' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="session")
def ui_packages() -> Path:
    """ui/node_modules as package-lock.json pins it (`npm ci` when missing or older)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the dashboard build checks need Node.js 20.19+ and npm")
    lock = UI / "package-lock.json"
    installed = UI / "node_modules" / ".package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm("ci", "--no-audit", "--no-fund")
    return UI / "node_modules"


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _install_chromium() -> str:
    """Debian's chromium, installed with apt-get when missing; skip (saying why) if that fails."""
    found = shutil.which("chromium")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            pytest.skip("chromium is not installed and installing it needs root (or sudo)")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["install", "-y", "--no-install-recommends", "chromium"]
    log = ""
    for argv in (install, ["update"], install):  # a stale package list: update once, then retry
        done = subprocess.run(
            [*prefix, apt, *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=1200,
            check=False,
        )
        log += f"$ apt-get {' '.join(argv)}\n{done.stdout[-1000:]}{done.stderr[-1000:]}"
        found = shutil.which("chromium")
        if found:
            return found
    pytest.skip(f"chromium could not be installed with apt-get:\n{log}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium driven by Playwright (never a Playwright browser download)."""
    executable = _install_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab (own session storage); fails the test on any uncaught page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(30_000)
    yield tab
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page screenshots go: $QUAFF_SCREENSHOT_DIR (`make screenshots`), else a temp dir."""
    chosen = os.environ.get("QUAFF_SCREENSHOT_DIR")
    target = (ROOT / chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target
