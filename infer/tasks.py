"""Stored tasks a node runs on its device thread: evaluations and merged exports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from peft import PeftModel

from infer.cache import ModelCache, activate
from infer.export import run_export
from infer.scheduler import TaskWork
from quaff_core.data.jsonl import Example, read_examples
from quaff_core.lm.evaluation import evaluate_dataset
from quaff_core.lm.exact_match import score as exact_match
from quaff_core.lm.tokenization import tokenize_examples
from store import evaluations
from store.blobs import BlobStore
from store.db import session_scope
from store.model_refs import ModelRef, resolve_model
from store.models import File, Job
from store.settings import Settings

logger = logging.getLogger(__name__)
ANSWER_SLACK_TOKENS = 4


def score(cache: ModelCache, ref: ModelRef, examples: list[Example], job: Job) -> dict[str, Any]:
    """Loss and token accuracy (`evaluate_dataset`), greedy exact match of final assistant turns."""
    target = cache.get(ref)
    model = activate(target)
    tokenizer = target.base.tokenizer
    plain = target.adapter is None and isinstance(model, PeftModel)
    chats = [e for e in examples if e.format == "chat" and e.messages[-1].role == "assistant"]
    with model.disable_adapter() if plain else nullcontext():
        dataset = tokenize_examples(
            examples,
            tokenizer,
            max_seq_length=int(job.training.get("max_seq_length", 1024)),
            train_on_inputs=job.training.get("train_on_inputs", "auto"),
        )
        result = evaluate_dataset(model, dataset, pad_token_id=int(tokenizer.pad_token_id))
        matched = None
        if chats:
            longest = max(len(tokenizer(e.messages[-1].content)["input_ids"]) for e in chats)
            matched = exact_match(
                model, tokenizer, chats, max_new_tokens=longest + ANSWER_SLACK_TOKENS
            ).exact_match
    return {
        "model": ref.name,
        "loss": result.loss,
        "mean_token_accuracy": result.mean_token_accuracy,
        "exact_match": matched,
        "n_examples": result.n_examples,
        "n_tokens": result.n_tokens,
        "n_exact_match_examples": len(chats),
    }


def run_evaluation(settings: Settings, cache: ModelCache, evaluation_id: str, node_id: str) -> None:
    """Score every model of a stored evaluation and store the results (or the failure)."""
    blobs = BlobStore(settings.blob_dir)
    with session_scope(settings) as session:
        row = evaluations.start_evaluation(session, evaluation_id, node_id)
        if row is None:
            return
        try:
            job = session.get(Job, row.job_id)
            data = session.get(File, row.file_id)
            if job is None or data is None:
                raise ValueError("the job or the file was deleted")
            examples = read_examples(blobs.path(data.blob_key))
            refs = [resolve_model(session, settings, job.project_id, m) for m in row.models]
            results = [score(cache, ref, examples, job) for ref in refs]
        except Exception as exc:  # the evaluation must end failed, whatever broke
            logger.exception("evaluation %s failed", evaluation_id)
            evaluations.fail_evaluation(session, row, f"{type(exc).__name__}: {exc}")
            return
        evaluations.finish_evaluation(session, row, results)


def task_factory(settings: Settings, node_id: Callable[[], str]) -> Callable[[str, str], TaskWork]:
    """Builds the TaskWork for a task type and id (ValueError for an unknown type)."""

    def make(kind: str, task_id: str) -> TaskWork:
        if kind == "evaluation":
            return TaskWork(
                f"evaluation {task_id}",
                lambda cache: run_evaluation(settings, cache, task_id, node_id()),
            )
        if kind == "export":
            return TaskWork(
                f"export {task_id}", lambda cache: run_export(settings, cache, task_id, node_id())
            )
        raise ValueError(f"unknown task type {kind!r}: use evaluation or export")

    return make
