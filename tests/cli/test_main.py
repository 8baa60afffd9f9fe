"""Smoke tests of the package and the `quaff` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import api
import quaff_core
import store
import worker
from cli.common import package_version
from cli.main import main
from store.settings import get_settings


def test_packages_import() -> None:
    for module in (api, worker, store, quaff_core):
        assert module.__doc__


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"quaff {package_version()}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: quaff" in out
    assert "info" in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_info_runs_a_real_int8_gemm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    cpu = next(d for d in facts["devices"] if d["device"] == "cpu")
    assert cpu["int8_gemm"] is True
    assert facts["quaff"] == package_version()


def test_console_script_entry_point() -> None:
    script = Path(sys.executable).parent / "quaff"
    assert script.exists(), "the `quaff` console script is not installed in this environment"
    result = subprocess.run(
        [str(script), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("quaff ")


def test_a_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QUAFF_DEVICE", "gpu")
    get_settings.cache_clear()
    try:
        assert main(["db", "current"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.startswith("quaff db: error: invalid setting QUAFF_DEVICE: ")
    assert "Traceback" not in err
