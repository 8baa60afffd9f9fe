"""Serving benchmark: a tuned SmolLM2 served the ways Quaff can, beside its base and llama.cpp.

`python -m bench.serve [--tokens N] [--repeats R] [--modes base,tuned-merged,...]`: decode
tokens/s and time to first token (a ~50-token chat prompt) at 1 and 8 concurrent streams for
- `base`: the base as `quaff infer` serves it (ModelCache, `generate_rows`);
- `tuned-merged`: the tuned model on the default path (QUAFF_INFER_ADAPTERS=merged);
- `tuned-shared`: unmerged LoRA over the plain base (QUAFF_INFER_ADAPTERS=shared);
- `tuned-int8`: unmerged LoRA over the Quaff int8 base (QUAFF_INFER_ADAPTERS=int8);
- `hf-merged`: the merged export in plain transformers (`model.generate`, one call per stream);
- `llama.cpp-f16`, `llama.cpp-q8_0`: the GGUF exports in `llama-server` (same threads, `-np 8`).
The adapter is LoRA r=16 on every linear layer (random, scaled down). Modes run interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from bench.common import environment
from infer.cache import MB, ModelCache, activate
from infer.export import package_export
from infer.generate import Row, Sampling, TokenEvent, generate_rows
from quaff_core import calibrate
from quaff_core.adapters.merge import merge_adapter, write_export_facts
from quaff_core.file_names import OUTLIER_MAP_FILE, QUAFF_FILE
from quaff_core.models.llama_cpp import llama_server, running_server
from quaff_core.models.loading import load_base_model
from quaff_core.models.provenance import name_base
from quaff_core.options.base_models import SMOLLM2
from store.archives import pack_dir
from store.blobs import BlobStore
from store.model_refs import ModelRef

PROMPT = [{"role": "user", "content": (
    "You are a careful storyteller. Write a long story about a lighthouse keeper who finds a "
    "message in a bottle during a winter storm, and what she decides to do about it."
)}]  # fmt: skip
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(root: Path) -> Path:
    """A LoRA adapter (r=16, every linear layer) with an outlier map, so every mode can load it."""
    base, tokenizer = load_base_model(SMOLLM2)
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False)
    outliers = calibrate(base, [dict(tokenizer([text] * 2, return_tensors="pt"))],
                         strategy="top_abs", max_ratio=0.01)  # fmt: skip
    config = LoraConfig(r=16, lora_alpha=32, target_modules=LINEAR, init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.02)
    adapter = root / "adapter"
    peft_model.save_pretrained(str(adapter))
    name_base(adapter, SMOLLM2)
    outliers.save(adapter / OUTLIER_MAP_FILE)
    facts = {"base_model": SMOLLM2, "quantization": {"method": "quaff", "scale_beta": 0.9}}
    (adapter / QUAFF_FILE).write_text(json.dumps(facts))
    return adapter


def served(root: Path, adapter: Path | None, mode: str) -> tuple[Any, Any]:
    """The model and tokenizer `quaff infer` runs for the base or the tuned model in `mode`."""
    blobs = BlobStore(root / "blobs")
    cache = ModelCache(blobs, root / "cache", budget_bytes=8192 * MB, device="cpu", dtype=None,
                       adapters=mode)  # type: ignore[arg-type]  # fmt: skip
    if adapter is None:
        target = cache.get(ModelRef(name="base", base=SMOLLM2))
    else:
        info = blobs.put(f"adapters/{mode}.tar.gz", pack_dir(adapter, root / f"{mode}.tgz"))
        target = cache.get(ModelRef(name="tuned", base=SMOLLM2, adapter_id="a",
                                    blob_key=info.key, sha256=info.sha256))  # fmt: skip
    return activate(target), target.base.tokenizer


def prompt_ids(tokenizer: Any) -> list[int]:
    """The benchmark prompt as token ids (chat template applied)."""
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def ours(model: Any, tokenizer: Any, ids: list[int], streams: int, tokens: int) -> dict[str, float]:
    """One `generate_rows` batch of `streams` rows: mean TTFT and aggregate decode tokens/s."""
    first: list[float] = []
    counts = [0] * streams

    def sink(i: int) -> Callable[[TokenEvent], None]:
        def take(event: TokenEvent) -> None:
            if counts[i] == 0:
                first.append(time.perf_counter())
            counts[i] += event.token_id is not None

        return take

    start = time.perf_counter()
    generate_rows(model, tokenizer, [Row(ids, tokens, sink(i)) for i in range(streams)],
                  Sampling(temperature=0.0))  # fmt: skip
    end = time.perf_counter()
    decoded = sum(counts) - streams
    return {"ttft_s": statistics.mean(first) - start,
            "decode_tok_s": decoded / max(end - max(first), 1e-9)}  # fmt: skip


def plain_hf(model: Any, tokenizer: Any, ids: list[int], streams: int, tokens: int) -> dict:
    """The merged export in plain transformers: `generate` on a batch of `streams` copies."""
    batch = torch.tensor([ids] * streams)
    with torch.no_grad():
        start = time.perf_counter()
        model.generate(batch, max_new_tokens=1, min_new_tokens=1, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        total = time.perf_counter() - start
    decoded = (out.shape[1] - len(ids) - 1) * streams
    return {"ttft_s": ttft, "decode_tok_s": decoded / max(total - ttft, 1e-9)}


def llama(url: str, ids: list[int], streams: int, tokens: int) -> dict[str, float]:
    """`streams` concurrent streamed /completion requests: mean TTFT, aggregate decode tok/s."""
    body = {"prompt": ids, "n_predict": tokens, "temperature": 0, "top_k": 1, "stream": True,
            "ignore_eos": True, "cache_prompt": False}  # fmt: skip
    firsts: list[float] = []
    counts = [0] * streams
    start = time.perf_counter()

    def one(i: int) -> None:
        with httpx.stream("POST", f"{url}/completion", json=body, timeout=300) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    if counts[i] == 0:
                        firsts.append(time.perf_counter())
                    counts[i] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    end = time.perf_counter()
    return {"ttft_s": statistics.mean(firsts) - start,
            "decode_tok_s": (sum(counts) - streams) / max(end - max(firsts), 1e-9)}  # fmt: skip


Runner = Callable[[int, int], dict[str, float]]
OURS = {"base": ("merged", False), "tuned-merged": ("merged", True),
        "tuned-shared": ("shared", True), "tuned-int8": ("int8", True)}  # fmt: skip
MODES = (*OURS, "hf-merged", "llama.cpp-f16", "llama.cpp-q8_0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="quaff-bench-serve-") as tmp:
        root = Path(tmp)
        rows = run(root, args)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": environment(args.threads), "rows": rows}, indent=1))


def run(root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every mode at 1 and 8 streams, interleaved over `repeats` rounds; medians."""
    adapter = make_adapter(root)
    runners: dict[str, Runner] = {}
    wanted = args.modes.split(",")
    tokenizer = load_base_model(SMOLLM2)[1]
    ids = prompt_ids(tokenizer)
    for name, (mode, tuned) in OURS.items():
        if name in wanted:
            model, tokenizer = served(root / name, adapter if tuned else None, mode)
            runners[name] = partial(ours, model, tokenizer, ids)
    merged = merge_adapter(SMOLLM2, adapter, root / "merged")
    if "hf-merged" in wanted:
        hf = AutoModelForCausalLM.from_pretrained(merged).eval()
        runners["hf-merged"] = partial(plain_hf, hf, tokenizer, ids)
    servers = []
    kinds = [k for k in ("f16", "q8_0") if f"llama.cpp-{k}" in wanted]
    if kinds:
        write_export_facts(merged, adapter, {"passed": True})
        binary = llama_server()
        for kind in kinds:
            gguf = package_export(f"gguf_{kind}", merged, adapter, root) / f"model-{kind}.gguf"
            server = running_server(binary, gguf, "-np", "8", "-c", "4096", threads=args.threads)
            url = server.__enter__()
            servers.append(server)
            runners[f"llama.cpp-{kind}"] = partial(llama, url, ids)
    try:
        return measure(runners, args.tokens, args.repeats)
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def measure(runners: dict[str, Runner], tokens: int, repeats: int) -> list[dict[str, Any]]:
    """Medians per mode and stream count (one warm-up call each first)."""
    rows = []
    for streams in (1, 8):
        for runner in runners.values():
            runner(streams, 4)
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in runners}
        for _ in range(repeats):
            for mode, runner in runners.items():
                runs[mode].append(runner(streams, tokens))
        for mode in runners:
            median = {k: statistics.median(r[k] for r in runs[mode]) for k in runs[mode][0]}
            rows.append({"mode": mode, "streams": streams, **median})
            print(json.dumps(rows[-1]), flush=True)  # as it goes: a long run keeps its rows
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: decode tok/s and TTFT per mode and stream count, ratios to the base."""
    base = {r["streams"]: r for r in rows if r["mode"] == "base"}
    one = {r["mode"]: r for r in rows if r["streams"] == 1}
    lines = ["| mode | streams | decode tok/s | x base | x 1 stream | TTFT s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        tok = r["decode_tok_s"]
        lines.append(
            f"| {r['mode']} | {r['streams']} | {tok:.1f} | "
            f"{tok / base[r['streams']]['decode_tok_s']:.2f} | "
            f"{tok / one[r['mode']]['decode_tok_s']:.2f} | {r['ttft_s']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
