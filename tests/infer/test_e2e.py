"""End to end with real processes: the openai SDK asks base, fine-tuned and checkpoint models
through `quaff api` → `quaff infer`; outputs equal PEFT's own `generate`; exports and evals."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from openai.types.chat import ChatCompletionMessageParam
from peft import PeftModel
from sqlalchemy import select

from quaff_core.adapters.merge import merge_into
from quaff_core.models.loading import load_base_model
from store.auth import create_key
from store.db import session_factory
from store.models import InferNode
from tests.infer.conftest import Served, chat_rows
from tests.processes import ROOT, wait_for

pytestmark = pytest.mark.slow

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 7 plus 7?"}]
MAX_TOKENS = 10


def ask(served: Served, model: str, **extra: Any) -> Any:
    return served.sdk.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=MAX_TOKENS, temperature=0, **extra
    )


def reference_tokens(model: PeftModel, tokenizer: Any) -> list[str]:
    """Greedy tokens of `model.generate` on QUESTION, each decoded alone."""
    text = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=MAX_TOKENS, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id) + 1]
    return [tokenizer.decode([t]) for t in new]


def served_tokens(served: Served, model: str) -> list[str]:
    reply = ask(served, model, logprobs=True)
    return [t.token for t in reply.choices[0].logprobs.content]


def cli_env(served: Served) -> dict[str, str]:
    """The service's environment plus the client CLI's server and key."""
    return {**served.svc.env, "OPENAI_BASE_URL": served.svc.base_url,
            "OPENAI_API_KEY": served.svc.api_key}  # fmt: skip


def node_stats(served: Served) -> dict[str, Any]:
    with session_factory(served.svc.settings)() as session:
        node = session.scalars(select(InferNode)).one()
    return httpx.get(f"{node.url}/internal/v1/stats", timeout=10,
                     headers={"Authorization": f"Bearer {node.token}"}).json()  # fmt: skip


def test_chat_streamed_and_not_for_base_ft_and_checkpoint(served: Served) -> None:
    checkpoint = served.sdk.fine_tuning.jobs.checkpoints.list(served.plain.id).data[-1]
    names = ["tiny-llama", served.plain.fine_tuned_model, checkpoint.fine_tuned_model_checkpoint]
    listed = [m.id for m in served.sdk.models.list()]
    assert checkpoint.fine_tuned_model_checkpoint in listed
    for name in names:
        whole = ask(served, name)
        assert whole.object == "chat.completion"
        assert whole.model == name
        assert whole.choices[0].finish_reason in ("stop", "length")
        assert 0 < whole.usage.completion_tokens <= MAX_TOKENS
        chunks = list(ask(served, name, stream=True, stream_options={"include_usage": True}))
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] == whole.choices[0].finish_reason


def test_greedy_output_equals_peft_generate(served: Served, tmp_path: Path) -> None:
    base, tokenizer = load_base_model("tiny-llama")
    adapter = served.adapter_dir(served.plain.id, tmp_path / "plain")
    peft_model = PeftModel.from_pretrained(base, str(adapter)).eval()
    assert served_tokens(served, served.plain.fine_tuned_model) == reference_tokens(
        peft_model, tokenizer
    )
    # an adapter trained on the int8 base is served merged into the float base, as exported
    merged = merge_into(load_base_model("tiny-llama")[0], served.adapter_dir(
        served.quaff.id, tmp_path / "quaff")).eval()  # fmt: skip
    assert served_tokens(served, served.quaff.fine_tuned_model) == reference_tokens(
        merged, tokenizer
    )


def test_each_fine_tuned_model_is_merged_once(served: Served) -> None:
    names = [served.quaff.fine_tuned_model, served.quaff_twin.fine_tuned_model]
    first = [ask(served, n).choices[0].message.content for n in names]
    again = [ask(served, n).choices[0].message.content for n in names]
    assert first == again
    stats = node_stats(served)
    assert stats["adapters_mode"] == "merged"
    merged = [b for b in stats["bases"] if "merged:" in b["key"]]
    assert len(merged) >= 2
    assert all(len(b["adapters"]) == 1 for b in merged)
    assert all(stats["base_loads"][b["key"]] == 1 for b in merged)


def test_sixteen_concurrent_streams_complete(served: Served) -> None:
    results: list[str | None] = [None] * 16

    def stream(i: int) -> None:
        chunks = served.sdk.chat.completions.create(
            model=served.plain.fine_tuned_model, stream=True, max_tokens=8,
            messages=[{"role": "user", "content": f"What is {i} plus {i}?"}],
        )  # fmt: skip
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        results[i] = finishes[-1]

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(r in ("stop", "length") for r in results), results
    assert node_stats(served)["batches_run"] > 0


def test_another_projects_model_is_not_found(served: Served) -> None:
    with session_factory(served.svc.settings)() as session:
        _row, other_key = create_key(session, "someone-else")
    other = openai.OpenAI(base_url=served.svc.base_url, api_key=other_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        other.chat.completions.create(model=served.plain.fine_tuned_model, messages=QUESTION)
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    assert served.plain.fine_tuned_model not in [m.id for m in other.models.list()]


def test_bad_parameters_are_400s_naming_the_field(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(served, "tiny-llama", top_p=0)
    assert caught.value.param == "top_p"


def test_adapter_archive_names_its_base_and_carries_a_modelfile(
    served: Served, tmp_path: Path
) -> None:
    adapter = served.adapter_dir(served.quaff.id, tmp_path / "a")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-llama"
    facts = json.loads((adapter / "quaff.json").read_text())
    assert facts["weights"]["source"].startswith("built in code")
    assert "base_model: tiny-llama" in (adapter / "README.md").read_text()
    modelfile = (adapter / "Modelfile").read_text()
    assert "FROM tiny-llama" in modelfile
    assert "ADAPTER ." in modelfile
    assert "TEMPLATE" in modelfile


LOAD_MERGED = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
messages = json.loads(sys.argv[2])
text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits[0].tolist()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("peft", "quaff_core"))
print(json.dumps({"logits": logits, "heavy": heavy}))
"""


def test_merged_export_loads_without_peft_and_matches(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "merged"
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "export", served.plain.id, "-o", str(target)],
        cwd=ROOT, env=cli_env(served), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + served.svc.log_tail()
    assert (target / "model.safetensors").is_file()
    assert (target / "config.json").is_file()
    fresh = subprocess.run(
        [sys.executable, "-c", LOAD_MERGED, str(target), json.dumps(QUESTION)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    result = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    base, tokenizer = load_base_model("tiny-llama")
    peft_model = PeftModel.from_pretrained(
        base, str(served.adapter_dir(served.plain.id, tmp_path / "p"))
    )
    # transformers types a conversation as list[dict[str, str]], not OpenAI's message TypedDicts
    text = tokenizer.apply_chat_template(
        QUESTION,  # type: ignore[arg-type]
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = peft_model.eval()(input_ids=ids).logits[0]
    assert torch.allclose(torch.tensor(result["logits"]), expected, atol=1e-4, rtol=1e-4)


def test_jobs_eval_prints_base_and_tuned(served: Served, tmp_path: Path) -> None:
    valid = tmp_path / "valid.jsonl"
    valid.write_bytes(chat_rows(6, 50))
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "jobs", "eval", served.plain.id, "--file", str(valid)],
        cwd=ROOT, env=cli_env(served), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + served.svc.log_tail()
    lines = run.stdout.strip().splitlines()
    assert lines[0].split() == ["model", "loss", "mean_token_accuracy", "exact_match", "n_examples"]
    assert [line.split()[0] for line in lines[1:]] == ["tiny-llama", served.plain.fine_tuned_model]
    listed = served.sdk.get(f"/fine_tuning/jobs/{served.plain.id}/evaluations", cast_to=object)
    assert listed["data"][0]["status"] == "succeeded"  # type: ignore[index]


def test_a_gguf_export_is_built_by_the_node_and_reports_the_converters_refusal(
    served: Served,
) -> None:
    url = f"{served.svc.base_url}/fine_tuning/jobs/{served.plain.id}/adapter"
    headers = {"Authorization": f"Bearer {served.svc.api_key}"}

    def finished() -> httpx.Response | None:
        response = httpx.get(url, params={"format": "gguf", "gguf_type": "q8_0"},
                             headers=headers, timeout=60)  # fmt: skip
        return None if response.status_code == 202 else response

    first = httpx.get(url, params={"format": "gguf", "gguf_type": "q8_0"}, headers=headers,
                      timeout=60)  # fmt: skip
    assert first.status_code == 202
    assert first.json()["format"] == "gguf_q8_0"
    done = wait_for("the gguf export", finished, timeout=600)
    # tiny-llama's built-in byte tokenizer is not one llama.cpp's converter knows
    assert done.status_code == 400, done.text
    assert done.json()["error"]["code"] == "export_failed"
    assert "convert_hf_to_gguf.py" in done.json()["error"]["message"]
