"""`client.fine_tuning.alpha.graders.run / validate` through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from api.main import create_app
from quaff_core.graders.sandbox import unshare_works
from store.settings import Settings
from tests.helpers import KeyedProject
from tests.processes import serve_in_thread

EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


@pytest.fixture
def sdk(quaff_settings: Settings, keyed_project: KeyedProject) -> Iterator[OpenAI]:
    """An SDK client on a real server, with the project's key and no retries."""
    with serve_in_thread(create_app(quaff_settings)) as url:
        client = OpenAI(base_url=url, api_key=keyed_project.key, max_retries=0)
        yield client
        client.close()


def test_run_a_string_check_and_a_multi_grader(sdk: OpenAI) -> None:
    graders = sdk.fine_tuning.alpha.graders
    hit = graders.run(grader=EXACT, model_sample="2026-12-07", item={"answer": "2026-12-07"})  # type: ignore[arg-type]
    assert hit.reward == 1.0
    assert hit.metadata.name == "exact"
    assert hit.metadata.errors.other_error is False
    miss = graders.run(grader=EXACT, model_sample="7 Dec", item={"answer": "2026-12-07"})  # type: ignore[arg-type]
    assert miss.reward == 0.0
    multi = {
        "type": "multi",
        "name": "both",
        "graders": {
            "exact": EXACT,
            "close": {
                "type": "text_similarity",
                "name": "close",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.answer }}",
                "evaluation_metric": "fuzzy_match",
            },
        },
        "calculate_output": "0.5 * exact + 0.5 * close",
    }
    mixed = graders.run(grader=multi, model_sample="2026-12-08", item={"answer": "2026-12-07"})  # type: ignore[arg-type]
    assert 0.4 < mixed.reward < 0.5
    assert mixed.sub_rewards["exact"] == 0.0


def test_validate_returns_the_grader_or_a_400_naming_the_field(sdk: OpenAI) -> None:
    graders = sdk.fine_tuning.alpha.graders
    assert graders.validate(grader=EXACT).grader.name == "exact"  # type: ignore[arg-type, union-attr]
    with pytest.raises(openai.BadRequestError) as bad:
        graders.validate(grader={**EXACT, "operation": "regex"})  # type: ignore[arg-type]
    assert bad.value.body["param"] == "grader.operation"  # type: ignore[index]
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "no-such-model",
        "input": [{"role": "user", "content": "Grade {{ sample.output_text }}"}],
    }
    with pytest.raises(openai.BadRequestError) as unknown:
        graders.validate(grader=judge)  # type: ignore[arg-type]
    assert unknown.value.body["param"] == "grader.model"  # type: ignore[index]


def test_a_judge_without_an_inference_process_is_a_per_sample_error(sdk: OpenAI) -> None:
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "tiny-llama",
        "input": [{"role": "user", "content": "Grade {{ sample.output_text }}"}],
    }
    result = sdk.fine_tuning.alpha.graders.run(grader=judge, model_sample="x")  # type: ignore[arg-type]
    assert result.reward == 0.0
    assert result.metadata.errors.api_model_grader_server_error is True


@pytest.mark.skipif(not unshare_works(), reason="needs Linux namespaces (unshare)")
def test_a_python_grader_that_raises_reports_its_traceback(sdk: OpenAI) -> None:
    source = "def grade(sample, item):\n    return 1 / 0\n"
    grader = {"type": "python", "name": "py", "source": source}
    result = sdk.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")  # type: ignore[arg-type]
    assert result.reward == 0.0
    assert result.metadata.errors.python_grader_runtime_error is True
    assert "ZeroDivisionError" in (result.metadata.errors.python_grader_runtime_error_details or "")
