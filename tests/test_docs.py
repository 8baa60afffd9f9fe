"""The docs: README.md stays short, every relative link resolves, the docs name every setting and
event kind, docs/development.md maps every folder and names only files that exist, and the README
quick start works as printed against a real `quaff serve`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quaff_core.train_events import EventKind
from store.events import ServiceEvent
from store.settings import Settings
from tests.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOC_FILES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 200
DEVELOPMENT = DOCS / "development.md"
# The quick-start blocks, in the order a reader runs them; each follows `<!-- quickstart: NAME -->`.
QUICKSTART = {
    "data": "bash",
    "sdk": "python",
    "curl": "bash",
    "cli": "bash",
    "ask": "python",
    "ask_curl": "bash",
}
README_ADDRESS = "127.0.0.1:8000"  # where `make run` serves; the test's server has its own port
BLOCK_SECONDS = 300

_MARKED = re.compile(r"^<!-- quickstart: (\w+) -->\n```(\w+)\n(.*?)^```$", re.M | re.S)
_FENCED = re.compile(r"^```.*?^```$", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
_SOURCE_PATH = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|toml|json))`")


def _prose(text: str) -> str:
    """Markdown without code blocks and code spans (where `](` is code, not a link)."""
    return _INLINE_CODE.sub("", _FENCED.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCED.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _broken_links(path: Path) -> list[str]:
    """The relative links of `path` whose file (or heading anchor) does not exist."""
    broken = []
    for target in _LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no file {linked})")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    return broken


def quickstart_blocks() -> list[tuple[str, str, str]]:
    """(name, language, code) of each marked quick-start block, in README order."""
    found: list[tuple[str, str, str]] = _MARKED.findall(README.read_text(encoding="utf-8"))
    return found


def test_readme_is_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/"


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_every_relative_link_points_at_an_existing_file(path: Path) -> None:
    assert _broken_links(path) == []


def _folders() -> list[str]:
    """Every package folder of the tree and every folder of `quaff_core`, as `name/`."""
    packages = [p.parent.name for p in ROOT.glob("*/__init__.py")]
    core = [p.parent.name for p in (ROOT / "quaff_core").glob("*/__init__.py")]
    return sorted(f"{name}/" for name in {*packages, *core})


def test_the_development_guide_maps_every_folder() -> None:
    text = DEVELOPMENT.read_text(encoding="utf-8")
    assert {"api/", "tests/", "training/", "options/"} <= set(_folders())
    assert [f for f in _folders() if f"`{f}`" not in text] == []


def test_the_development_guide_names_only_files_that_exist() -> None:
    """A path like `quaff_core/quant/linear.py`, or `quant/linear.py` inside a package's list."""
    bases = [ROOT, *(p.parent for p in ROOT.glob("*/__init__.py"))]
    named = _SOURCE_PATH.findall(DEVELOPMENT.read_text(encoding="utf-8"))
    assert "quaff_core/quant/linear.py" in named
    assert [n for n in named if not any((base / n).is_file() for base in bases)] == []


def test_readme_marks_each_quickstart_block_once() -> None:
    found = [(name, lang) for name, lang, _code in quickstart_blocks()]
    assert found == list(QUICKSTART.items())


def test_the_curl_ask_block_asks_the_newest_fine_tuned_model() -> None:
    (code,) = [code for name, _lang, code in quickstart_blocks() if name == "ask_curl"]
    picker = re.search(r"python3 -c \\?\s*'([^']*)'", code)
    assert picker is not None
    jobs = {
        "data": [
            {"status": "running", "fine_tuned_model": None},
            {"status": "succeeded", "fine_tuned_model": "ft:tiny-llama:p::abcd1234"},
            {"status": "succeeded", "fine_tuned_model": "ft:tiny-llama:p::older000"},
        ]
    }
    ran = subprocess.run(
        [sys.executable, "-c", picker.group(1)], input=json.dumps(jobs), capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    assert ran.stdout.strip() == "ft:tiny-llama:p::abcd1234"  # the model, never a checkpoint
    assert "/v1/fine_tuning/jobs" in code


def test_the_readme_gives_the_measured_cost_of_a_cpu_job_and_the_eta() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    job_table = results.split("### The whole job", 1)[1].split("\n\n")[2]
    rates = [int(row.split("|")[4]) for row in job_table.splitlines() if "| quaff," in row]
    said = re.search(r"SmolLM2-135M job trains (\d+)-(\d+) tokens/s", readme)
    assert said is not None
    assert (int(said[1]), int(said[2])) == (min(rates) // 10 * 10, -(-max(rates) // 10) * 10)
    assert "`estimated_finish`" in readme


def test_the_cli_quickstart_finds_the_server_by_itself() -> None:
    (code,) = [code for name, _lang, code in quickstart_blocks() if name == "cli"]
    assert "8000" not in code
    assert "--base-url" not in code
    assert "--api-key" not in code


def setting_variables() -> list[str]:
    """The environment variable of every setting (its first alias, else QUAFF_<NAME>)."""
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.append(str(choices[0]) if choices else f"QUAFF_{name.upper()}")
    return names


def test_operations_guide_names_every_setting() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    missing = [variable for variable in setting_variables() if f"`{variable}`" not in text]
    assert missing == []


def test_api_guide_names_every_event_kind() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    kinds = [k.value for k in ServiceEvent] + [k.value for k in EventKind]
    assert [kind for kind in kinds if f"`{kind}`" not in text] == []


def _client_env() -> dict[str, str]:
    """The environment of a user's second terminal: no Quaff or OpenAI variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUAFF_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def served_checkout(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory like a checkout after `make run`: `.venv`, and `.quaff` of a live server.

    Runs what `make run` runs (`quaff db upgrade`, then `quaff serve --no-migrate --ensure-key`)
    in that directory, on a free loopback port; yields (directory, API root).
    """
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("needs the project's virtual environment (make install)")
    if shutil.which("curl") is None:
        pytest.skip("the curl quick start needs curl")
    home = tmp_path / "checkout"
    home.mkdir()
    (home / ".venv").symlink_to(venv, target_is_directory=True)
    env = {**_client_env(), "QUAFF_DEVICE": "cpu"}
    quaff = [sys.executable, "-m", "cli.main"]
    subprocess.run([*quaff, "db", "upgrade"], cwd=home, env=env, check=True, capture_output=True)
    port = free_port()
    serve_argv = [*quaff, "serve", "--no-migrate", "--ensure-key", "--host", "127.0.0.1"]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [*serve_argv, "--port", str(port)],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            if serve.poll() is not None:
                pytest.fail(f"quaff serve exited:\n{log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("quaff serve to be ready", ready, timeout=90)
        yield home, f"http://127.0.0.1:{port}/v1"
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGINT)  # Ctrl-C, as in the terminal running `make run`
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=30)


def _run_block(home: Path, name: str, lang: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run one block as a reader would: python with the venv's python, bash with bash."""
    script = home / f"quickstart_{name}.{'py' if lang == 'python' else 'sh'}"
    script.write_text(code, encoding="utf-8")
    if lang == "python":
        argv = [str(home / ".venv" / "bin" / "python"), script.name]
    else:
        argv = ["bash", "-e", "-o", "pipefail", script.name]  # stop at the first failing line
    return subprocess.run(
        argv,
        cwd=home,
        env=_client_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
        check=False,
    )


@pytest.mark.slow
def test_the_readme_quickstart_works_as_printed(served_checkout: tuple[Path, str]) -> None:
    home, base_url = served_checkout
    port = base_url.removeprefix("http://127.0.0.1:").removesuffix("/v1")
    for name, lang, code in quickstart_blocks():
        done = _run_block(home, name, lang, code.replace(README_ADDRESS, f"127.0.0.1:{port}"))
        assert done.returncode == 0, f"{name} block failed:\n{done.stdout[-3000:]}{done.stderr}"
        if name.startswith("ask"):
            assert "ft:tiny-llama:" in done.stdout or '"chat.completion"' in done.stdout
    key = (home / ".quaff" / "api-key").read_text(encoding="utf-8").strip()
    listed = httpx.get(
        f"{base_url}/fine_tuning/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ).json()["data"]
    # one job each from the SDK, curl and `quaff jobs` blocks, all trained to the end
    assert [(j["model"], j["status"]) for j in listed] == [("tiny-llama", "succeeded")] * 3
    assert all(j["hyperparameters"]["n_epochs"] == 1 for j in listed)
    assert all(j["training"]["max_seq_length"] == 128 for j in listed)
