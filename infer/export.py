"""Build an export on a node: merge, check against the adapter on the base, convert, store."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session
from transformers import AutoTokenizer

from infer.cache import ModelCache
from quaff_core.adapters.merge import (
    EXPORT_FACTS,
    merge_adapter,
    verify_export,
    write_export_facts,
)
from quaff_core.data.examples import chosen_view
from quaff_core.data.jsonl import read_examples
from quaff_core.lm.tokenization import tokenize_examples
from quaff_core.models.llama_cpp import convert_lora, convert_model
from quaff_core.models.loading import load_base_model
from quaff_core.models.modelfile import MODELFILE, gguf_modelfile_text
from store import exports
from store.archives import pack_dir
from store.blobs import BlobStore
from store.db import session_scope
from store.model_refs import job_model_ref
from store.models import File, Job, MergedExport
from store.settings import Settings

logger = logging.getLogger(__name__)
CHECK_EXAMPLES = 4
CHECK_MAX_TOKENS = 256


def _check_rows(blobs: BlobStore, data: File, tokenizer_source: str) -> list[dict[str, list[int]]]:
    """The first few examples of the job's validation (else training) file, tokenised."""
    examples = read_examples(blobs.path(data.blob_key))[:CHECK_EXAMPLES]
    # a DPO job's pairs are checked on their preferred answers
    examples = [chosen_view(e) if e.format == "preference" else e for e in examples]
    _model, tokenizer = load_base_model(tokenizer_source)
    dataset = tokenize_examples(examples, tokenizer, max_seq_length=CHECK_MAX_TOKENS)
    return [dataset[i] for i in range(len(dataset))]


def package_export(fmt: str, merged: Path, adapter: Path, tmp: Path) -> Path:
    """The directory to archive for `fmt`: the merged model itself, or its GGUF conversion (an
    Ollama Modelfile beside it), or the adapter as a GGUF LoRA (llama.cpp's own converters)."""
    if fmt == "merged":
        return merged
    out = tmp / fmt
    out.mkdir()
    shutil.copy(merged / EXPORT_FACTS, out / EXPORT_FACTS)
    if fmt == "gguf_lora":
        convert_lora(adapter, merged, out / "adapter-f16.gguf", "f16")
        return out
    gguf_type = fmt.removeprefix("gguf_")
    name = f"model-{gguf_type}.gguf"
    convert_model(merged, out / name, gguf_type)
    tokenizer = AutoTokenizer.from_pretrained(merged)
    stop = tokenizer.eos_token if isinstance(tokenizer.eos_token, str) else None
    text = gguf_modelfile_text(name, getattr(tokenizer, "chat_template", None), stop)
    (out / MODELFILE).write_text(text, encoding="utf-8")
    return out


def _build(
    session: Session, blobs: BlobStore, cache: ModelCache, row: MergedExport, tmp: Path
) -> None:
    """Merge, check, convert to the row's format and store it (or fail the row)."""
    job = session.get(Job, row.job_id)
    if job is None:
        raise ValueError("the job was deleted")
    ref = job_model_ref(session, job, row.step)
    adapter = cache.adapter_dir(ref)
    data = session.get(File, job.validation_file_id or job.training_file_id)
    if data is None:
        raise ValueError("the job's training and validation files were deleted")
    rows = _check_rows(blobs, data, ref.base)
    merged = merge_adapter(ref.base, adapter, tmp / "merged")
    verification = verify_export(ref.base, adapter, merged, rows)
    if not verification["passed"]:
        message = (
            f"The merged model's logits differ from the adapter on the base by "
            f"{verification['max_abs_logit_diff']:.3g} (allowed "
            f"{verification['tolerance']:.3g}); the export was not kept."
        )
        exports.fail_export(session, row, message, verification)
        return
    write_export_facts(merged, adapter, verification)
    archive = pack_dir(package_export(row.format, merged, adapter, tmp), tmp / "export.tar.gz")
    exports.finish_export(session, blobs, row, archive, verification)


def run_export(settings: Settings, cache: ModelCache, export_id: str, node_id: str) -> None:
    """Build the export (merged, GGUF or GGUF LoRA) and store it, or why it failed."""
    blobs = BlobStore(settings.blob_dir)
    with session_scope(settings) as session:
        row = session.get(MergedExport, export_id)
        if row is None or row.status != "building" or row.node_id != node_id:
            return
        try:
            with tempfile.TemporaryDirectory(prefix="quaff-export-") as tmp:
                _build(session, blobs, cache, row, Path(tmp))
        except Exception as exc:  # the export must end failed, whatever broke
            logger.exception("export %s failed", export_id)
            session.rollback()
            exports.fail_export(session, row, f"{type(exc).__name__}: {exc}", None)
