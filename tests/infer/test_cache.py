"""The model cache: one base per (model, outlier map), adapters by name, LRU under a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from infer.cache import MB, AdapterMode, ModelCache, ModelUnavailable, activate
from quaff_core.adapters.loading import load_adapter
from quaff_core.adapters.merge import merge_adapter
from quaff_core.data.jsonl import Example, Message
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.train import train
from store.archives import pack_dir
from store.blobs import BlobStore
from store.model_refs import ModelRef

EXAMPLES = [
    Example("chat", i + 1, messages=(Message("user", f"Say {i}"), Message("assistant", f"{i}!")))
    for i in range(8)
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two Quaff adapters sharing an outlier map, stored as blobs; their refs."""
    root = tmp_path_factory.mktemp("cache")
    blobs = BlobStore(root / "blobs")
    refs, dirs, outliers = {}, {}, None
    for seed in (1, 2):
        config = TrainConfig(batch_size=4, learning_rate=3e-3, max_seq_length=48, lora_r=4,
                             max_steps=2, seed=seed, quantization="quaff",
                             outlier_strategy="top_abs", outlier_max_ratio=0.05)  # fmt: skip
        result = train("tiny-llama", EXAMPLES, root / f"run{seed}", config=config,
                       outlier_map=outliers)  # fmt: skip
        outliers = result.outlier_map
        assert result.adapter_dir is not None
        info = blobs.put(
            f"adapters/a{seed}.tar.gz", pack_dir(result.adapter_dir, root / f"{seed}.tgz")
        )
        refs[seed] = ModelRef(name=f"ft-{seed}", base="tiny-llama", adapter_id=f"adapter-{seed}",
                              blob_key=info.key, sha256=info.sha256)  # fmt: skip
        dirs[seed] = result.adapter_dir
    return {"blobs": blobs, "refs": refs, "dirs": dirs, "root": root}


def _cache(
    stored: dict[str, Any], budget_mb: float = 512, mode: AdapterMode = "int8"
) -> ModelCache:
    return ModelCache(stored["blobs"], stored["root"] / "c", budget_bytes=int(budget_mb * MB),
                      device="cpu", dtype=None, adapters=mode)  # fmt: skip


def _greedy(model: Any, tokenizer: Any, prompt: str, n: int = 12) -> list[int]:
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return [int(t) for t in out[0, ids["input_ids"].shape[1] :]]


PROMPTS = ["Say 3", "Say 12345", "hello there", "<|im_start|>user\nSay 7<|im_end|>\n"]


def test_merged_mode_serves_the_merged_exports_answers(
    stored: dict[str, Any], tmp_path: Path
) -> None:
    cache = _cache(stored, mode="merged")
    for seed in (1, 2):
        target = cache.get(stored["refs"][seed])
        assert target.adapter is None
        served = activate(target)
        assert not isinstance(served, PeftModel)
        export = merge_adapter("tiny-llama", stored["dirs"][seed], tmp_path / f"m{seed}")
        merged = AutoModelForCausalLM.from_pretrained(export).eval()
        ids = torch.tensor([[3, 4, 5, 6, 7]])
        with torch.no_grad():
            torch.testing.assert_close(served(input_ids=ids).logits, merged(input_ids=ids).logits)
        tokenizer = target.base.tokenizer
        for prompt in PROMPTS:
            assert _greedy(served, tokenizer, prompt) == _greedy(merged, tokenizer, prompt)
    assert set(cache.base_loads) == {
        f"tiny-llama|merged:{stored['refs'][s].sha256[:16]}|float32" for s in (1, 2)
    }
    assert cache.loaded_keys() == ["adapter-1", "adapter-2", "tiny-llama"]
    cache.get(stored["refs"][1])
    assert set(cache.base_loads.values()) == {1}


def test_shared_mode_attaches_unmerged_adapters_to_one_plain_base(stored: dict[str, Any]) -> None:
    cache = _cache(stored, mode="shared")
    ids = torch.tensor([[3, 4, 5, 6]])
    plain_ref = ModelRef(name="tiny-llama", base="tiny-llama")
    base = load_base_model("tiny-llama")[0].eval()
    for seed in (1, 2, 1):
        served = activate(cache.get(stored["refs"][seed]))
        alone = PeftModel.from_pretrained(
            load_base_model("tiny-llama")[0], str(stored["dirs"][seed])
        )
        with torch.no_grad():
            torch.testing.assert_close(
                served(input_ids=ids).logits, alone.eval()(input_ids=ids).logits
            )
    plain = cache.get(plain_ref)
    with torch.no_grad(), activate(plain).disable_adapter():
        torch.testing.assert_close(
            activate(plain)(input_ids=ids).logits, base(input_ids=ids).logits
        )
    assert cache.base_loads == {"tiny-llama|float32": 1}


def test_an_unknown_adapters_mode_is_refused(stored: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="merged, shared, int8"):
        _cache(stored, mode="fast")  # type: ignore[arg-type]


def test_adapters_with_one_outlier_map_share_one_int8_base(stored: dict[str, Any]) -> None:
    cache = _cache(stored)
    ids = torch.tensor([[3, 4, 5, 6]])
    for seed in (1, 2, 1, 2):
        target = cache.get(stored["refs"][seed])
        with torch.no_grad():
            served = activate(target)(input_ids=ids).logits
        alone = load_adapter(load_base_model("tiny-llama")[0], stored["dirs"][seed]).eval()
        with torch.no_grad():
            torch.testing.assert_close(served, alone(input_ids=ids).logits)
    (key,) = cache.base_loads
    assert "quaff:" in key
    assert cache.base_loads[key] == 1
    assert sorted(cache.bases[key].adapters) == ["adapter-1", "adapter-2"]
    assert cache.loaded_keys() == ["adapter-1", "adapter-2", "tiny-llama"]


def test_the_base_model_and_a_budget_that_fits_nothing(stored: dict[str, Any]) -> None:
    cache = _cache(stored)
    plain = cache.get(ModelRef(name="tiny-llama", base="tiny-llama"))
    assert plain.adapter is None
    assert list(cache.base_loads) == ["tiny-llama|float32"]
    with pytest.raises(ModelUnavailable, match="QUAFF_INFER_MEMORY_BUDGET_MB"):
        _cache(stored, budget_mb=0.01).get(stored["refs"][1])


def test_least_recently_used_base_is_evicted_to_fit(stored: dict[str, Any]) -> None:
    probe = _cache(stored)
    probe.get(ModelRef(name="tiny-llama", base="tiny-llama"))
    one_base = probe.used_bytes()
    cache = _cache(stored, budget_mb=1.05 * one_base / MB)  # one fp32 base, not two bases
    cache.get(ModelRef(name="tiny-llama", base="tiny-llama"))
    cache.get(stored["refs"][1])
    assert len(cache.bases) == 1
    assert next(iter(cache.bases)).startswith("tiny-llama|quaff:")
    assert cache.used_bytes() <= cache.budget_bytes


def test_a_missing_adapter_archive_is_unavailable(stored: dict[str, Any], tmp_path: Path) -> None:
    ref = ModelRef(name="gone", base="tiny-llama", adapter_id="x", blob_key="adapters/none.tar.gz",
                   sha256="0" * 64)  # fmt: skip
    with pytest.raises(ModelUnavailable, match="missing"):
        _cache(stored).get(ref)
