"""The GGUF round trip's pieces, shared by tests/infer/test_gguf.py and bench/gguf_agreement.py:
a tuned SmolLM2 (a random LoRA, scaled down), our server's greedy answers and llama-server's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import torch
from peft import LoraConfig, get_peft_model

from infer.cache import MB, ModelCache, activate
from infer.export import package_export
from infer.generate import Row, Sampling, TokenEvent, generate_rows
from quaff_core.adapters.merge import merge_adapter, write_export_facts
from quaff_core.models.llama_cpp import running_server
from quaff_core.models.loading import load_base_model
from quaff_core.models.provenance import name_base
from quaff_core.options.base_models import SMOLLM2
from store.archives import pack_dir
from store.blobs import BlobStore
from store.model_refs import ModelRef

QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "What is 12 plus 7?",
    "Write one sentence about the sea.",
    "Which planet is the largest?",
    "Say hello in Spanish.",
    "What do bees make?",
    "How many legs does a spider have?",
    "What is the opposite of hot?",
    "Give me a word that rhymes with cat.",
]
MAX_TOKENS = 16


def build_tuned(root: Path) -> dict[str, Any]:
    """A small LoRA adapter on SmolLM2 (random, scaled down so answers stay fluent), merged,
    under `root`."""
    base, _tokenizer = load_base_model(SMOLLM2)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.05)
    adapter = root / "adapter"
    peft_model.save_pretrained(str(adapter))
    name_base(adapter, SMOLLM2)
    merged = merge_adapter(SMOLLM2, adapter, root / "merged")
    write_export_facts(merged, adapter, {"passed": True})
    return {"root": root, "adapter": adapter, "merged": merged}


def our_answers(tuned: dict[str, Any]) -> tuple[list[list[int]], list[str]]:
    """Prompt ids and greedy answers of the inference node's default (merged) path."""
    root = tuned["root"]
    blobs = BlobStore(root / "blobs")
    info = blobs.put("adapters/t.tar.gz", pack_dir(tuned["adapter"], root / "a.tgz"))
    ref = ModelRef(name="ft-gguf", base=SMOLLM2, adapter_id="a", blob_key=info.key,
                   sha256=info.sha256)  # fmt: skip
    cache = ModelCache(blobs, root / "cache", budget_bytes=4096 * MB, device="cpu", dtype=None)
    target = cache.get(ref)
    tokenizer = target.base.tokenizer
    prompts, answers = [], []
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        events: list[TokenEvent] = []
        generate_rows(activate(target), tokenizer, [Row(ids, MAX_TOKENS, events.append)],
                      Sampling(temperature=0.0))  # fmt: skip
        prompts.append(ids)
        answers.append("".join(e.text for e in events))
    return prompts, answers


def llama_answers(binary: Path, model: Path, prompts: list[list[int]], *extra: str) -> list[str]:
    """Greedy answers of `llama-server -m model` to the same prompt token ids."""
    body = {"n_predict": MAX_TOKENS, "temperature": 0, "top_k": 1, "cache_prompt": False}
    with running_server(binary, model, "-c", "1024", *extra) as url:
        return [
            httpx.post(f"{url}/completion", json={**body, "prompt": ids}, timeout=120).json()[
                "content"
            ]
            for ids in prompts
        ]


def export(tuned: dict[str, Any], fmt: str) -> Path:
    """The export directory in `fmt`, as a node archives it (built once per module)."""
    built = tuned["root"] / fmt
    if built.is_dir():
        return built
    return package_export(fmt, tuned["merged"], tuned["adapter"], tuned["root"])
