"""`text_similarity`: fuzzy_match (rapidfuzz), bleu, gleu and meteor (NLTK), rouge_1..5 and
rouge_l (Google's rouge-score); each a score in [0, 1]. `cosine` needs an embeddings model,
which this service does not serve, and `meteor` needs NLTK's WordNet data: both are refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from nltk.corpus import wordnet
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu
from nltk.translate.meteor_score import meteor_score
from rapidfuzz import fuzz
from rouge_score import rouge_scorer

from quaff_core.graders.outcome import GraderConfigError, Outcome, check_keys, required_str
from quaff_core.graders.templates import render

FIELDS = {"type", "name", "input", "reference", "evaluation_metric"}
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Words and punctuation marks, lower-cased (the token lists BLEU, GLEU and METEOR use)."""
    return _TOKEN.findall(text.lower())


@cache
def _rouge(kind: str) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def rouge(kind: str) -> Callable[[str, str], float]:
    """The F-measure of one ROUGE kind (`rouge1`..`rouge5`, `rougeL`)."""
    return lambda text, ref: float(_rouge(kind).score(ref, text)[kind].fmeasure)


def bleu(text: str, ref: str) -> float:
    """Sentence BLEU-4 with smoothing (method 1), so a short answer does not score 0 by default."""
    smooth = SmoothingFunction().method1
    return float(sentence_bleu([tokens(ref)], tokens(text), smoothing_function=smooth))


def gleu(text: str, ref: str) -> float:
    """Sentence GLEU."""
    return float(sentence_gleu([tokens(ref)], tokens(text)))


def meteor(text: str, ref: str) -> float:
    """METEOR (WordNet synonyms)."""
    return float(meteor_score([tokens(ref)], tokens(text)))


def fuzzy_match(text: str, ref: str) -> float:
    """rapidfuzz's `fuzz.ratio` (normalised Indel similarity), scaled to [0, 1]."""
    return float(fuzz.ratio(text, ref)) / 100.0


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": rouge("rougeL"),
}
KNOWN = ("cosine", *METRICS)


@cache
def has_wordnet() -> bool:
    """Whether NLTK's WordNet data is installed (METEOR needs it; nothing is downloaded)."""
    try:
        wordnet.ensure_loaded()
    except LookupError:
        return False
    return True


def validate(spec: dict[str, Any], path: str) -> None:
    """Raise GraderConfigError unless `spec` is a text_similarity grader that runs here."""
    check_keys(spec, FIELDS, path)
    for key in ("name", "input", "reference"):
        required_str(spec, key, path)
    metric, param = spec.get("evaluation_metric"), f"{path}.evaluation_metric"
    if metric not in KNOWN:
        raise GraderConfigError(f"'{param}' must be one of {', '.join(KNOWN)}", param)
    if metric == "cosine":
        raise GraderConfigError(
            "The text_similarity metric 'cosine' needs an embeddings model, which this server "
            "does not serve; use fuzzy_match, bleu, gleu or a rouge metric.",
            param,
        )
    if metric == "meteor" and not has_wordnet():
        raise GraderConfigError(
            "The text_similarity metric 'meteor' needs NLTK's WordNet data, which is not "
            "installed on this server (python -m nltk.downloader wordnet); use another metric.",
            param,
        )


def grade(spec: dict[str, Any], names: dict[str, Any]) -> Outcome:
    """The metric of the rendered input against the rendered reference."""
    text, reference = render(spec["input"], names), render(spec["reference"], names)
    return Outcome(METRICS[spec["evaluation_metric"]](text, reference))
