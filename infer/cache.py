"""Loaded models under a memory budget: bases and fine-tuned models, least recently used evicted.

How a fine-tuned model is served is the `adapters` mode (QUAFF_INFER_ADAPTERS):
- `merged` (default): its own copy of the unquantized base with the adapter merged in (what the
  merged export holds, so the answers are the export's), decoding as fast as the base;
- `shared`: one unquantized base per model id, LoRA adapters attached unmerged by name (PEFT's
  multi-adapter API; `set_adapter` switches), less memory per adapter, slower per token;
- `int8`: the Quaff int8 base the adapter was trained on, keyed by its outlier map (adapters
  sharing a map share one base), switching also loads the adapter's outlier-scale state: the
  least memory, the slowest, and the training-time numerics rather than the export's.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from quaff_core.adapters.loading import (
    adapter_method,
    adapter_momentum,
    attach_adapter,
    convert_as_trained,
    find_adapter_dir,
    trained_quantization,
)
from quaff_core.adapters.merge import merge_into
from quaff_core.file_names import ADAPTER_WEIGHTS, OUTLIER_MAP_FILE
from quaff_core.models.loading import ModelLoadError, load_base_model
from quaff_core.quant.convert import load_quaff_state_dict
from store.archives import unpack
from store.blobs import BlobStore
from store.model_refs import ModelRef

logger = logging.getLogger(__name__)
MB = 1024 * 1024
AdapterMode = Literal["merged", "shared", "int8"]
ADAPTER_MODES: tuple[AdapterMode, ...] = ("merged", "shared", "int8")


class ModelUnavailable(ValueError):
    """The model cannot be served on this host; the message says why (a 400 for the caller)."""


def module_bytes(model: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class LoadedAdapter:
    """An adapter attached to a base: its PEFT name, Quaff scale state and size."""

    name: str
    momentum: dict[str, torch.Tensor] | None
    nbytes: int


@dataclass
class LoadedBase:
    """One base model in memory (a PeftModel once an adapter is attached), or a merged model."""

    key: str
    base_id: str
    model: Any
    tokenizer: Any
    nbytes: int
    adapters: dict[str, LoadedAdapter] = field(default_factory=dict)
    active: str | None = None
    merged: str | None = None  # the adapter merged into this copy of the base


@dataclass(frozen=True)
class Target:
    """What a request runs on: a loaded base and the adapter to activate (None: the base)."""

    base: LoadedBase
    adapter: str | None


class ModelCache:
    """Bases and adapters kept under `budget_bytes`, least recently used evicted first."""

    def __init__(
        self,
        blobs: BlobStore,
        cache_dir: Path,
        *,
        budget_bytes: int,
        device: str,
        dtype: torch.dtype | None,
        adapters: AdapterMode = "merged",
    ) -> None:
        if adapters not in ADAPTER_MODES:
            raise ValueError(
                f"adapters must be one of {', '.join(ADAPTER_MODES)}, not {adapters!r}"
            )
        self.adapters = adapters
        self.blobs = blobs
        self.cache_dir = cache_dir
        self.budget_bytes = budget_bytes
        self.device = device
        self.dtype = dtype
        self.bases: OrderedDict[str, LoadedBase] = OrderedDict()
        self.base_loads: dict[str, int] = {}
        self._lock = threading.Lock()

    def used_bytes(self) -> int:
        """Bytes of every loaded base and adapter."""
        return sum(
            b.nbytes + sum(a.nbytes for a in b.adapters.values()) for b in self.bases.values()
        )

    def loaded_keys(self) -> list[str]:
        """Base ids and adapter ids held (what the registry advertises)."""
        keys: list[str] = []
        for base in self.bases.values():
            keys += [base.base_id, *base.adapters, *([base.merged] if base.merged else [])]
        return sorted(set(keys))

    def stats(self) -> dict[str, Any]:
        """Loaded bases, their adapters, load counts and memory use."""
        return {
            "adapters_mode": self.adapters,
            "budget_bytes": self.budget_bytes,
            "used_bytes": self.used_bytes(),
            "base_loads": dict(self.base_loads),
            "bases": [
                {
                    "key": b.key,
                    "base": b.base_id,
                    "bytes": b.nbytes,
                    "adapters": [*b.adapters, *([b.merged] if b.merged else [])],
                }
                for b in self.bases.values()
            ],
        }

    def adapter_dir(self, ref: ModelRef) -> Path:
        """The unpacked adapter archive of `ref` (unpacked once per checksum)."""
        if ref.blob_key is None or ref.sha256 is None:
            raise ValueError(f"{ref.name} has no adapter archive")
        target = self.cache_dir / "adapters" / ref.sha256
        if not target.is_dir():
            if not self.blobs.exists(ref.blob_key):
                raise ModelUnavailable(f"the adapter archive of {ref.name} is missing on this host")
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
            unpack(self.blobs.path(ref.blob_key), staging)
            try:
                staging.rename(target)
            except OSError:  # another process unpacked it meanwhile
                shutil.rmtree(staging, ignore_errors=True)
        return find_adapter_dir(target)

    def base_key(self, ref: ModelRef, adapter: Path | None) -> str:
        """`<base>|<dtype>` (the base; shared adapters), `<base>|merged:<adapter sha>|<dtype>`,
        or, in int8 mode, `<base>|quaff:<outlier map digest>|<dtype>`."""
        dtype = str(self.dtype or torch.float32).removeprefix("torch.")
        if adapter is None or self.adapters == "shared":
            return f"{ref.base}|{dtype}"
        if self.adapters == "merged":
            return f"{ref.base}|merged:{(ref.sha256 or '')[:16]}|{dtype}"
        if trained_quantization(adapter) != "quaff":
            return f"{ref.base}|{dtype}"
        digest = hashlib.sha256((adapter / OUTLIER_MAP_FILE).read_bytes()).hexdigest()[:16]
        return f"{ref.base}|quaff:{digest}|{dtype}"

    def get(self, ref: ModelRef) -> Target:
        """Load what `ref` needs (evicting others to fit the budget) and mark it used."""
        with self._lock:
            adapter = self.adapter_dir(ref) if ref.adapter_id else None
            key = self.base_key(ref, adapter)
            if adapter is not None and self.adapters == "merged":
                base = self.bases.get(key) or self._load_merged(key, ref, adapter)
                self.bases.move_to_end(key)
                return Target(base, None)
            base = self.bases.get(key) or self._load_base(key, ref, adapter)
            self.bases.move_to_end(key)
            if adapter is not None and ref.adapter_id is not None:
                if ref.adapter_id not in base.adapters:
                    self._attach(base, ref.adapter_id, adapter)
                else:
                    base.adapters[ref.adapter_id] = base.adapters.pop(ref.adapter_id)  # LRU
            return Target(base, ref.adapter_id)

    def _load(self, ref: ModelRef) -> tuple[Any, Any]:
        """The unquantized base model (float32) and its tokenizer, on the device."""
        try:
            return load_base_model(ref.base, device=self.device)
        except ModelLoadError as exc:
            raise ModelUnavailable(f"cannot load the base model {ref.base}: {exc}") from exc

    def _keep(self, loaded: LoadedBase, what: str) -> LoadedBase:
        """Make room for a freshly loaded model and hold it."""
        loaded.model.eval()
        self._fit(loaded.nbytes, keep=loaded.key, what=what)
        self.bases[loaded.key] = loaded
        self.base_loads[loaded.key] = self.base_loads.get(loaded.key, 0) + 1
        logger.info("loaded %s (%.1f MB)", loaded.key, loaded.nbytes / MB)
        return loaded

    def _load_base(self, key: str, ref: ModelRef, adapter: Path | None) -> LoadedBase:
        model, tokenizer = self._load(ref)
        if adapter is not None and self.adapters == "int8":
            convert_as_trained(model, adapter, compute_dtype=self.dtype)
        elif self.dtype is not None:
            model.to(self.dtype)
        loaded = LoadedBase(key, ref.base, model, tokenizer, module_bytes(model))
        return self._keep(loaded, f"the base model {ref.base}")

    def _load_merged(self, key: str, ref: ModelRef, adapter: Path) -> LoadedBase:
        """The base in float32 with the adapter merged (as the export), then cast to `dtype`."""
        model, tokenizer = self._load(ref)
        try:
            model = merge_into(model, adapter)
        except ValueError as exc:
            raise ModelUnavailable(f"{ref.name} cannot be merged into its base: {exc}") from exc
        if self.dtype is not None:
            model.to(self.dtype)
        loaded = LoadedBase(key, ref.base, model, tokenizer, module_bytes(model))
        loaded.merged = ref.adapter_id
        return self._keep(loaded, f"{ref.name} (merged into {ref.base})")

    def _attach(self, base: LoadedBase, name: str, adapter: Path) -> None:
        method = adapter_method(adapter)
        if method != "LORA":
            raise ModelUnavailable(
                f"{name} is a {method} adapter; the inference node serves LoRA adapters only. "
                "Download the adapter and load it with PeftModel.from_pretrained on its base."
            )
        nbytes = (adapter / ADAPTER_WEIGHTS).stat().st_size
        self._fit(nbytes, keep=base.key, what=f"adapter {name}")
        base.model = attach_adapter(base.model, adapter, name)
        base.model.eval()
        momentum = adapter_momentum(adapter) if self.adapters == "int8" else None
        base.adapters[name] = LoadedAdapter(name, momentum, nbytes)
        logger.info("attached adapter %s to %s", name, base.key)

    def _fit(self, nbytes: int, *, keep: str, what: str) -> None:
        """Evict least recently used adapters, then bases, until `nbytes` more fit."""
        if nbytes > self.budget_bytes:
            raise ModelUnavailable(
                f"{what} needs {nbytes / MB:.0f} MB, more than this host's inference memory "
                f"budget of {self.budget_bytes / MB:.0f} MB (QUAFF_INFER_MEMORY_BUDGET_MB)"
            )
        while self.used_bytes() + nbytes > self.budget_bytes and self._evict_one(keep):
            pass

    def _evict_one(self, keep: str) -> bool:
        for base in self.bases.values():
            if len(base.adapters) > 1:
                name = next(n for n in base.adapters if n != base.active)
                base.model.delete_adapter(name)
                del base.adapters[name]
                logger.info("evicted adapter %s from %s", name, base.key)
                return True
        for key in list(self.bases):
            if key != keep:
                del self.bases[key]
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                logger.info("evicted base %s", key)
                return True
        return False


def activate(target: Target) -> Any:
    """Make `target`'s adapter the active one (with its Quaff scales); returns the model to run."""
    base = target.base
    if target.adapter is None:
        return base.model
    if base.active != target.adapter:
        base.model.set_adapter(target.adapter)
        momentum = base.adapters[target.adapter].momentum
        if momentum is not None:
            load_quaff_state_dict(base.model, momentum)
        base.active = target.adapter
    return base.model
