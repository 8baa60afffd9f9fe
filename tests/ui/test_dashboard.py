"""The dashboard in a real browser (headless chromium) against a real `quaff serve` on loopback:
its API, worker and inference node, with no route served from the browser side."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from cli.serve import KEY_FILE
from tests.processes import free_port, wait_for
from tests.ui.conftest import ROOT

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
A11Y_CHECK = (HERE / "a11y.js").read_text()
# Every step the loss chart's summary shows, in order (installed before the page loads).
RECORD_STEPS = """
window.__lossSteps = [];
new MutationObserver(() => {
  const summary = document.querySelector("figure.chart .chart-summary");
  const match = summary && /^Step (\\d+) of/.exec(summary.textContent);
  if (match && window.__lossSteps.at(-1) !== Number(match[1])) {
    window.__lossSteps.push(Number(match[1]));
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


@dataclass(frozen=True)
class Served:
    """A running `quaff serve` (API + worker) and its key."""

    origin: str
    key: str
    logs: Path

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.origin}/v1",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`quaff serve --ensure-key` on a free loopback port with a fresh data directory."""
    root = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(
        QUAFF_DATA_DIR=str(root / "data"),
        QUAFF_DEVICE="cpu",
        QUAFF_EVENT_POLL_SECONDS="0.2",
        PYTHONPATH=str(ROOT),
    )
    log = (root / "serve.log").open("wb")
    argv = [sys.executable, "-m", "cli.main", "serve", "--ensure-key", "--port", str(port)]
    serve = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    origin = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if serve.poll() is not None:
            pytest.fail((root / "serve.log").read_text())
        try:
            return httpx.get(f"{origin}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("quaff serve to be ready", ready, timeout=120)
        key = (root / "data" / KEY_FILE).read_text().strip()
        yield Served(origin=origin, key=key, logs=root / "serve.log")
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=60)


def chat_lines(n: int, offset: int = 0) -> str:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(offset, offset + n)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows)


def sign_in(page: Page, served: Served) -> None:
    page.goto(f"{served.origin}/ui/")
    page.get_by_label("API key").fill(served.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fine-tuning jobs")).to_be_visible()


def nav(page: Page, name: str) -> Any:
    """A link of the main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def option(page: Page, param_suffix: str) -> Any:
    """The generated input of the option whose `param` ends with `param_suffix`."""
    return page.locator(f'[data-param$="{param_suffix}"]')


def check_accessible(page: Page) -> None:
    problems = page.evaluate(A11Y_CHECK)
    assert problems == [], problems


def shot(page: Page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_sign_in_rejects_a_wrong_key_and_keeps_the_key_in_the_tab(
    page: Page, served: Served, screenshot_dir: Path
) -> None:
    page.goto(f"{served.origin}/ui/jobs")
    check_accessible(page)
    shot(page, screenshot_dir, "sign-in")
    page.get_by_label("API key").fill("sk-quaff-wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Incorrect API key provided")
    sign_in(page, served)
    assert page.evaluate("sessionStorage.getItem('quaff.apiKey')") == served.key
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    page.reload()
    expect(page.get_by_role("heading", name="Fine-tuning jobs")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('quaff.apiKey')") is None


def test_a_bad_file_shows_its_line_numbers(page: Page, served: Served, tmp_path: Path) -> None:
    sign_in(page, served)
    nav(page, "New job").click()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n' + chat_lines(9))
    page.locator("#training-file-upload").set_input_files(str(bad))
    alert = page.locator(".file-picker .error-note")
    expect(alert).to_contain_text("bad.jsonl was rejected")
    expect(alert.locator("li").first).to_contain_text("line 1")
    expect(alert.locator("li").nth(1)).to_contain_text("line 2")
    expect(page.locator("#training-file")).to_have_value("")


def test_train_watch_download_and_chat(
    page: Page, served: Served, tmp_path: Path, screenshot_dir: Path
) -> None:
    page.add_init_script(RECORD_STEPS)
    sign_in(page, served)
    nav(page, "New job").click()
    expect(page.get_by_role("heading", name="New fine-tuning job")).to_be_focused()
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_text(chat_lines(24))
    valid.write_text(chat_lines(8, offset=100))
    page.locator("#training-file-upload").set_input_files(str(train))
    expect(page.locator(".file-picker").first).to_contain_text("24 examples")
    page.locator("#validation-file-upload").set_input_files(str(valid))
    expect(page.locator(".file-picker").nth(1)).to_contain_text("8 examples")
    page.get_by_label("Base model").select_option("tiny-llama")
    page.eval_on_selector_all("details", "all => all.forEach(d => { d.open = true; })")
    option(page, "n_epochs").fill("2")
    option(page, "batch_size").fill("4")
    option(page, "training.max_seq_length").fill("128")
    option(page, "training.n_evals").fill("3")
    option(page, "training.n_checkpoints").fill("2")
    option(page, "lora.r").fill("4")
    option(page, "quantization.outlier_strategy").select_option(label="top_abs")
    option(page, "quantization.outlier_max_ratio").fill("0.05")
    # The server's own check, shown next to its field: a module name its pattern refuses.
    option(page, "lora.target_modules").fill("q_proj, not a module!")
    page.get_by_role("button", name="Create job").click()
    field_error = page.locator('[id="opt-lora-target_modules-error"]')
    expect(field_error).to_contain_text("target_modules")
    expect(page.locator(".error-summary")).to_be_focused()
    check_accessible(page)
    shot(page, screenshot_dir, "new-job")
    option(page, "lora.target_modules").fill("")
    page.get_by_role("button", name="Create job").click()

    page.wait_for_url(re.compile(r"/ui/jobs/ftjob-"))
    job_id = page.url.rsplit("/", 1)[-1]
    loss = page.locator("figure", has_text="Loss").locator(".chart-summary")
    expect(loss).to_have_text(
        re.compile(r"^Step ([3-9]|1[0-2]) of 12: training loss"), timeout=180_000
    )
    shot(page, screenshot_dir, "job-running")
    expect(page.locator(".badge").first).to_have_text("Succeeded", timeout=180_000)
    # Points arrived while the job ran: partial curves first, then the whole one.
    steps = page.evaluate("() => window.__lossSteps")
    assert steps[-1] == 12
    assert any(step < 12 for step in steps), steps
    expect(page.get_by_text("The job has ended; all its events are shown.")).to_be_visible()
    expect(loss).to_contain_text("Step 12 of 12")
    expect(loss).to_contain_text("validation loss")
    expect(page.locator("figure", has_text="Learning rate")).to_contain_text("Step 12 of 12")
    expect(page.get_by_role("region", name="Checkpoints").locator("tbody tr")).to_have_count(2)
    expect(page.get_by_text("The job has successfully completed")).to_be_visible()
    check_accessible(page)
    shot(page, screenshot_dir, "job")

    with page.expect_download() as adapter:
        page.get_by_role("button", name="Download adapter").click()
    path = tmp_path / adapter.value.suggested_filename
    adapter.value.save_as(path)
    with tarfile.open(path) as archive:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(archive.getnames())
    expect(page.locator(".action-note")).to_contain_text(f"Downloaded {job_id}-adapter.tar.gz")
    with page.expect_download() as checkpoint:
        page.get_by_role(
            "button", name=re.compile(r"Download the checkpoint at step \d+")
        ).first.click()
    assert re.fullmatch(rf"{job_id}-step-\d+-adapter\.tar\.gz", checkpoint.value.suggested_filename)

    # Export (merged weights) may not exist yet: either a download or the API's own message.
    with served.http() as http:
        export = http.get(f"/fine_tuning/jobs/{job_id}/adapter", params={"format": "merged"})
    page.get_by_role("button", name="Export merged model").click()
    if export.is_success:
        expect(page.locator(".action-note")).to_contain_text("Downloaded")
    else:
        message = export.json()["error"]["message"]
        expect(page.get_by_role("alert").filter(has_text=message)).to_be_visible()

    # The outlier map this job calibrated: channels per layer.
    nav(page, "Outlier maps").click()
    expect(page.get_by_role("heading", name="Outlier maps")).to_be_focused()
    page.get_by_role("region", name="Outlier maps").locator("tbody a").first.click()
    expect(page.locator("figure", has_text="Outlier channels per layer")).to_contain_text("layers;")
    assert (
        page.get_by_role("region", name="Outlier channels by layer").locator("tbody tr").count() > 0
    )
    check_accessible(page)
    shot(page, screenshot_dir, "outlier-map")
    nav(page, "Outlier maps").click()
    shot(page, screenshot_dir, "outlier-maps")

    # Chat: the tuned model next to its base, both streamed.
    page.goto(f"{served.origin}/ui/jobs/{job_id}")
    page.get_by_role("link", name="Try in playground").click()
    expect(page.get_by_label("Compare two models side by side")).to_be_checked()
    page.get_by_label("Message").fill("What is 3 plus 3?")
    page.get_by_label("Message").press("Enter")
    replies = page.locator(".bubble.assistant")
    expect(replies).to_have_count(2)
    for i in range(2):
        expect(replies.nth(i)).to_have_attribute("aria-busy", "false", timeout=120_000)
        reply = replies.nth(i).locator(".reply")
        expect(reply).to_have_text(re.compile(r"\S"))
    check_accessible(page)
    shot(page, screenshot_dir, "playground")
    check_phone_layout_and_stability(page.context.browser, served, job_id, screenshot_dir)


def test_jobs_list_filters_and_keyboard(page: Page, served: Served, screenshot_dir: Path) -> None:
    with served.http() as http:
        file_id = http.post(
            "/files", files={"file": ("t.jsonl", chat_lines(10))}, data={"purpose": "fine-tune"}
        ).json()["id"]
        body = {"model": "tiny-llama", "training_file": file_id, "suffix": "filterme"}
        created = http.post("/fine_tuning/jobs", json=body).json()["id"]
        http.post(f"/fine_tuning/jobs/{created}/cancel").raise_for_status()
    sign_in(page, served)
    rows = page.get_by_role("region", name="Jobs").locator("tbody tr")
    expect(rows.first).to_contain_text(created)  # newest first
    page.get_by_label("Status").select_option("cancelled")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Cancelled")
    page.get_by_label("Status").select_option("")
    page.get_by_label("Search").fill("FILTERME")
    expect(rows).to_have_count(1)
    # the URL follows in an effect after the filtered render: wait for it, do not race it
    expect(page).to_have_url(re.compile(r"[?&]q=FILTERME"))
    page.get_by_label("Search").fill("")
    shot(page, screenshot_dir, "jobs")
    # Keyboard only: the skip link first, then the navigation; focus moves to the new page's title.
    page.reload()
    expect(page.get_by_role("heading", name="Fine-tuning jobs")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for name in ("Quaff", "Jobs", "New job", "Outlier maps"):
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name=name, exact=True).first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Outlier maps")).to_be_focused()
    page.go_back()
    expect(page.get_by_role("heading", name="Fine-tuning jobs")).to_be_visible()


def test_job_controls_pause_resume_and_cancel(page: Page, served: Served) -> None:
    with served.http() as http:
        file_id = http.post(
            "/files", files={"file": ("t.jsonl", chat_lines(10))}, data={"purpose": "fine-tune"}
        ).json()["id"]
        body = {"model": "tiny-llama", "training_file": file_id, "suffix": "controls"}
        job_id = http.post("/fine_tuning/jobs", json=body).json()["id"]
    sign_in(page, served)
    page.goto(f"{served.origin}/ui/jobs/{job_id}")
    status = page.get_by_role("status").locator(".badge")
    page.get_by_role("button", name="Pause").click()
    expect(status).to_have_text("Paused")
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".action-note")).to_contain_text("Resume requested: the job is queued.")
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_have_text("Cancelled")
    for name in ("Pause", "Resume", "Cancel", "Download adapter"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    expect(page.get_by_text("Job cancelled by the user")).to_be_visible()


def test_jobs_list_pages_with_after_and_limit(page: Page, served: Served) -> None:
    with served.http() as http:
        total = len(http.get("/fine_tuning/jobs", params={"limit": 100}).json()["data"])
        file_id = http.post(
            "/files", files={"file": ("t.jsonl", chat_lines(10))}, data={"purpose": "fine-tune"}
        ).json()["id"]
        while total < 22:  # more than one page of 20; cancelled at once so the worker skips them
            body = {"model": "tiny-llama", "training_file": file_id, "suffix": "page"}
            job = http.post("/fine_tuning/jobs", json=body).json()["id"]
            http.post(f"/fine_tuning/jobs/{job}/cancel")
            total += 1
    sign_in(page, served)
    rows = page.get_by_role("region", name="Jobs").locator("tbody tr")
    expect(rows).to_have_count(20)
    page.get_by_role("button", name="Load older jobs").click()
    expect(rows).to_have_count(total)
    expect(page.get_by_role("button", name="Load older jobs")).to_have_count(0)


def check_phone_layout_and_stability(
    browser: Any, served: Served, job_id: str, screenshot_dir: Path
) -> None:
    """The finished job on a phone-sized screen: no sideways scrolling; outlier stability drawn."""
    with served.http() as http:
        job = http.get(f"/fine_tuning/jobs/{job_id}").json()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    expected = job["outlier_stability"]
    assert expected, "a finished Quaff job carries its outlier stability"
    sign_in(page, served)
    page.goto(f"{served.origin}/ui/jobs/{job_id}")
    last = expected[-1]
    expect(page.locator("figure", has_text="Outlier stability")).to_contain_text(
        f"Recall {last['recall'] * 100:.1f}% at step {last['step']}"
    )
    expect(page.locator("figure", has_text="Loss").locator(".chart-summary")).to_contain_text(
        "Step 12 of 12"
    )
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the job page scrolls sideways on a phone ({width}px wide)"
    shot(page, screenshot_dir, "job-phone")
    context.close()
