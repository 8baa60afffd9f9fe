"""Merge an adapter into its unquantized base as a plain transformers directory, and verify it.

The export is what `AutoModelForCausalLM.from_pretrained` loads with no PEFT and no quaff_core:
safetensors weights, config, tokenizer and chat template. It is checked against the adapter on
the unquantized base (`PeftModel.from_pretrained`): the largest logit difference on a few
examples must stay within `LOGIT_TOLERANCE` (relative to the largest logit), else the export
fails with the measured numbers. For an adapter trained on the Quaff int8 base the gap to the
int8 model it was trained on is measured too (information: merging cannot keep int8 rounding).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from quaff_core.adapters.loading import (
    PROMPT_PEFT_TYPES,
    adapter_facts,
    adapter_method,
    find_adapter_dir,
    load_adapter,
)
from quaff_core.lm.tokenization import PadCollator
from quaff_core.models.loading import load_base_model

LOGIT_TOLERANCE = 1e-4  # max |merged - adapter-on-base| / max(1, max |logit|), float32
EXPORT_FACTS = "quaff_export.json"


def merge_into(base: torch.nn.Module, adapter: str | os.PathLike[str]) -> Any:
    """`base` (unquantized) with the adapter's weight update merged in: PEFT's merge_and_unload."""
    path = find_adapter_dir(adapter)
    method = adapter_method(path)
    if method in PROMPT_PEFT_TYPES:
        raise ValueError(
            f"a {method} adapter learns virtual tokens, not weight updates: it cannot be merged "
            "into the base; use it with PeftModel.from_pretrained on the base instead"
        )
    return PeftModel.from_pretrained(base, str(path)).merge_and_unload()


def merge_adapter(base_id: str, adapter: str | os.PathLike[str], output: Path) -> Path:
    """Write base + adapter merged (float32) to `output`; returns it."""

    base, tokenizer = load_base_model(base_id)
    merged = merge_into(base, adapter)
    merged.config.name_or_path = base_id
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(output), safe_serialization=True)
    tokenizer.save_pretrained(str(output))
    return output


def _max_diff(
    model: torch.nn.Module, reference: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]]
) -> tuple[float, float]:
    """(max |logits - reference logits|, max |reference logits|) over unpadded positions."""
    worst, scale = 0.0, 0.0
    with torch.no_grad():
        for batch in batches:
            keep = batch["attention_mask"].bool()
            ours = model(**batch).logits.float()[keep]
            theirs = reference(**batch).logits.float()[keep]
            worst = max(worst, float((ours - theirs).abs().max()))
            scale = max(scale, float(theirs.abs().max()))
    return worst, scale


def example_batches(rows: Sequence[dict[str, Any]], pad_token_id: int) -> list[dict[str, Any]]:
    """Tokenised rows (input_ids lists) as padded batches of two for the check."""
    collate = PadCollator(pad_token_id=pad_token_id)
    batches = []
    for start in range(0, len(rows), 2):
        batch = collate(rows[start : start + 2])
        batches.append({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    return batches


def verify_export(
    base_id: str, adapter: str | os.PathLike[str], export: Path, rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Compare the export's logits with the adapter on the unquantized base (and the int8 one)."""

    if not rows:
        raise ValueError("verifying an export needs at least one tokenised example")
    path = find_adapter_dir(adapter)
    base, tokenizer = load_base_model(base_id)
    reference = PeftModel.from_pretrained(base, str(path)).eval()
    exported = AutoModelForCausalLM.from_pretrained(str(export)).eval()
    batches = example_batches(rows, int(tokenizer.pad_token_id))
    worst, scale = _max_diff(exported, reference, batches)
    allowed = LOGIT_TOLERANCE * max(1.0, scale)
    facts: dict[str, Any] = {
        "reference": "PeftModel.from_pretrained(unquantized base, adapter)",
        "n_examples": len(rows),
        "max_abs_logit_diff": worst,
        "max_abs_logit": scale,
        "tolerance": allowed,
        "relative_tolerance": LOGIT_TOLERANCE,
        "passed": worst <= allowed,
    }
    if adapter_facts(path).get("quantization", {}).get("method") == "quaff":
        int8 = load_adapter(load_base_model(base_id)[0], path).eval()
        facts["int8_trained_model_max_abs_logit_diff"] = _max_diff(exported, int8, batches)[0]
    return facts


def write_export_facts(export: Path, adapter: str | os.PathLike[str], verification: dict) -> None:
    """quaff_export.json: what was merged (the adapter's quaff.json facts) and the check."""
    facts = {"adapter": adapter_facts(find_adapter_dir(adapter)), "verification": verification}
    (export / EXPORT_FACTS).write_text(json.dumps(facts, indent=1), encoding="utf-8")
