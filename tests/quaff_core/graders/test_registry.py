"""Grader objects checked and run: string_check, text_similarity, templates, multi formulas and
the model graders with a stand-in judge."""

from __future__ import annotations

from typing import Any

import pytest

from quaff_core.graders import registry
from quaff_core.graders.model_graders import JudgeError, JudgeReply
from quaff_core.graders.outcome import GraderConfigError, Outcome
from quaff_core.graders.templates import namespace

CONTEXT = registry.GradingContext()


def check(output: str, item: Any, **grader: Any) -> Outcome:
    spec = registry.validate(grader, CONTEXT)
    [outcome] = registry.grade_many(spec, [namespace(output, item)], CONTEXT)
    return outcome


def string_check(operation: str, reference: str = "{{ item.answer }}") -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "s",
        "input": "{{ sample.output_text }}",
        "reference": reference,
        "operation": operation,
    }


@pytest.mark.parametrize(
    ("operation", "output", "score"),
    [
        ("eq", "Paris", 1.0),
        ("eq", "paris", 0.0),
        ("ne", "Paris", 0.0),
        ("ne", "Lyon", 1.0),
        ("like", "It is Paris.", 1.0),
        ("like", "It is paris.", 0.0),
        ("ilike", "It is PARIS.", 1.0),
        ("ilike", "Lyon", 0.0),
    ],
)
def test_string_check_operations(operation: str, output: str, score: float) -> None:
    assert check(output, {"answer": "Paris"}, **string_check(operation)).score == score


def test_templates_read_nested_items_and_output_json() -> None:
    grader = string_check("eq", reference="{{ item.facts.0.city }}")
    grader["input"] = "{{ sample.output_json.city }}"
    assert check('{"city": "Oslo"}', {"facts": [{"city": "Oslo"}]}, **grader).score == 1.0
    missing = check("Oslo", {"other": 1}, **string_check("eq"))
    assert (missing.score, missing.error) == (0.0, "invalid_variable_error")


@pytest.mark.parametrize(
    ("metric", "low", "high"),
    [("fuzzy_match", 0.85, 0.95), ("bleu", 0.4, 0.7), ("gleu", 0.5, 0.7), ("rouge_l", 0.8, 0.9)],
)
def test_text_similarity_metrics(metric: str, low: float, high: float) -> None:
    grader = {
        "type": "text_similarity",
        "name": "t",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.ref }}",
        "evaluation_metric": metric,
    }
    close = check("the cat sat on the mat", {"ref": "the cat sat on a mat"}, **grader).score
    same = check("the cat sat on the mat", {"ref": "the cat sat on the mat"}, **grader).score
    far = check("completely different words", {"ref": "the cat sat on a mat"}, **grader).score
    assert low <= close <= high
    assert same == pytest.approx(1.0)
    assert far < close


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({"type": "nope", "name": "x"}, "grader.type"),
        ({**string_check("eq"), "operation": "regex"}, "grader.operation"),
        ({**string_check("eq"), "extra": 1}, "grader.extra"),
        ({**string_check("eq"), "reference": "{{ secrets.key }}"}, "grader.reference"),
        (
            {"type": "text_similarity", "name": "t", "input": "a", "reference": "b",
             "evaluation_metric": "cosine"},
            "grader.evaluation_metric",
        ),
        ({"type": "python", "name": "p", "source": "def nope(): pass"}, "grader.source"),
        ({"type": "python", "name": "p", "source": "def grade(:"}, "grader.source"),
        (
            {"type": "multi", "name": "m", "graders": {"a": string_check("eq")},
             "calculate_output": "a + b"},
            "grader.calculate_output",
        ),
        (
            {"type": "multi", "name": "m", "graders": {"a": string_check("eq")},
             "calculate_output": "__import__('os').getcwd()"},
            "grader.calculate_output",
        ),
        (
            {"type": "score_model", "name": "j", "model": "m",
             "input": [{"role": "user", "content": "x"}]},
            "grader.type",
        ),
    ],
)  # fmt: skip
def test_graders_that_cannot_run_are_refused_naming_the_field(
    grader: dict[str, Any], param: str
) -> None:
    with pytest.raises(GraderConfigError) as refused:
        registry.validate(grader, CONTEXT)
    assert refused.value.param == param


def test_multi_combines_named_graders_with_its_formula() -> None:
    grader = {
        "type": "multi",
        "name": "m",
        "graders": {"exact": string_check("eq"), "part": string_check("ilike")},
        "calculate_output": "0.75 * exact + 0.25 * part ^ 2",
    }
    exact = check("Paris", {"answer": "Paris"}, **grader)
    assert exact.score == pytest.approx(1.0)
    assert exact.sub_scores == {"exact": 1.0, "part": 1.0}
    assert check("paris!", {"answer": "Paris"}, **grader).score == pytest.approx(0.25)
    zero = {**grader, "calculate_output": "exact / part"}
    broken = check("Lyon", {"answer": "Paris"}, **zero)
    assert (broken.score, broken.error) == (0.0, "formula_parse_error")


def judge_context(answer: str | None) -> registry.GradingContext:
    def judge(model: str, messages: list[dict[str, str]], sampling: dict[str, Any]) -> JudgeReply:
        if answer is None:
            raise JudgeError("no inference process")
        assert "Paris" in messages[-1]["content"]
        return JudgeReply(answer, token_usage=12)

    return registry.GradingContext(judge=judge, serves=lambda name: name == "tiny-llama")


def model_grader(kind: str) -> dict[str, Any]:
    grader: dict[str, Any] = {
        "type": kind,
        "name": "judge",
        "model": "tiny-llama",
        "input": [{"role": "user", "content": "Is {{ sample.output_text }} right?"}],
    }
    if kind == "label_model":
        grader.update(labels=["right", "wrong"], passing_labels=["right"])
    return grader


def test_model_graders_read_the_judges_answer() -> None:
    for answer, score in (('{"result": 0.8}', 0.8), ("I'd say 0.3", 0.3)):
        context = judge_context(answer)
        spec = registry.validate(model_grader("score_model"), context)
        [outcome] = registry.grade_many(spec, [namespace("Paris", {})], context)
        assert (outcome.score, outcome.token_usage) == (pytest.approx(score), 12)
    context = judge_context('{"result": "right"}')
    spec = registry.validate(model_grader("label_model"), context)
    assert registry.grade_many(spec, [namespace("Paris", {})], context)[0].score == 1.0
    failures: list[tuple[str | None, str]] = [
        ("7", "model_grader_parse_error"),
        (None, "model_grader_server_error"),
    ]
    for reply, error in failures:
        context = judge_context(reply)
        spec = registry.validate(model_grader("score_model"), context)
        assert registry.grade_many(spec, [namespace("Paris", {})], context)[0].error == error
    with pytest.raises(GraderConfigError) as unknown:
        registry.validate({**model_grader("score_model"), "model": "gpt-9"}, judge_context("1"))
    assert unknown.value.param == "grader.model"
