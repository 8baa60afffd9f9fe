"""End to end with real processes: a non-LoRA PEFT method, then supervised -> DPO as two jobs,
the second continuing from the first (`model` = its fine-tuned name), through the openai SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.processes import Service
from tests.worker.test_e2e import messages, training_data, wait_status

pytestmark = pytest.mark.slow

QUANT = {"method": "quaff", "outlier_strategy": "top_abs", "outlier_max_ratio": 0.05}
TRAINING = {"max_seq_length": 48, "learning_rate": 3e-3}


def preference_data(n: int = 12) -> bytes:
    """`n` OpenAI preference pairs (input / preferred_output / non_preferred_output)."""
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
            "non_preferred_output": [{"role": "assistant", "content": "I don't know."}],
        }
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def metrics_of(sdk: Any, job_id: str) -> list[dict[str, Any]]:
    """The data of every metrics event, oldest first."""
    return [e.data for e in messages(sdk, job_id) if e.type == "metrics"]


def test_prompt_tuning_job_trains_through_the_service(service: Service) -> None:
    sdk = service.sdk()
    file_id = sdk.files.create(file=("chat.jsonl", training_data(10)), purpose="fine-tune").id
    job = sdk.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=file_id,
        hyperparameters={"n_epochs": 1, "batch_size": 2},
        extra_body={
            "peft": {"method": "prompt_tuning", "num_virtual_tokens": 4},
            "quantization": QUANT,
            "training": {**TRAINING, "learning_rate": 3e-2},
        },
    )
    assert (job.model_extra or {})["peft"] == {"method": "prompt_tuning", "num_virtual_tokens": 4}
    done = wait_status(service, sdk, job.id, "succeeded")
    assert done.fine_tuned_model
    assert [m["step"] for m in metrics_of(sdk, job.id)] == [1, 2, 3, 4, 5]


def test_supervised_then_dpo_continues_from_the_first_job(service: Service) -> None:
    sdk = service.sdk()
    chat_id = sdk.files.create(file=("chat.jsonl", training_data(12)), purpose="fine-tune").id
    pairs = sdk.files.create(file=("pairs.jsonl", preference_data(12)), purpose="fine-tune")
    assert sdk.files.retrieve(pairs.id).status == "processed"
    first = sdk.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=chat_id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
        extra_body={"lora": {"r": 4, "alpha": 8}, "quantization": QUANT, "training": TRAINING},
    )
    sft = wait_status(service, sdk, first.id, "succeeded")
    second = sdk.fine_tuning.jobs.create(
        model=sft.fine_tuned_model,
        training_file=pairs.id,
        method={
            "type": "dpo",
            "dpo": {"hyperparameters": {"beta": 0.5, "n_epochs": 2, "batch_size": 4}},
        },
        extra_body={"training": TRAINING},
    )
    extra = second.model_extra or {}
    assert second.model == "tiny-llama"
    assert extra["continued_from"] == sft.fine_tuned_model
    assert extra["lora"]["r"] == 4  # the adapter's shape comes from the model continued from
    assert extra["outlier_map"] == (sft.model_extra or {})["outlier_map"]
    assert second.method is not None
    assert second.method.type == "dpo"
    assert second.method.dpo is not None
    dpo = wait_status(service, sdk, second.id, "succeeded", timeout=300)
    assert dpo.method.dpo is not None
    assert dpo.method.dpo.hyperparameters is not None
    assert dpo.method.dpo.hyperparameters.beta == 0.5
    texts = [e.message for e in messages(sdk, second.id)]
    assert not any(t.startswith("Calibrating") for t in texts)
    rows = metrics_of(sdk, second.id)
    assert len(rows) == 6
    assert {"train_rewards_margin", "train_rewards_accuracy"} <= set(rows[-1])
    assert rows[-1]["train_rewards_margin"] > rows[0]["train_rewards_margin"]
