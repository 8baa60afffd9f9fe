"""A reinforcement job end to end through the official SDK: a real worker trains tiny-llama with
GRPO against a string_check grader; the reward moves and is in the job's metrics events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.processes import Service, wait_for
from tests.worker.test_e2e import wait_status

pytestmark = pytest.mark.slow

GRADER = {
    "type": "string_check",
    "name": "has_a",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.letter }}",
    "operation": "ilike",
}


def prompts(n: int = 10) -> bytes:
    """OpenAI's RFT lines: a prompt, and the field the grader reads."""
    rows = [
        {"messages": [{"role": "user", "content": f"Write the letter a ({i})"}], "letter": "a"}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_a_reinforcement_job_moves_the_reward(service: Service) -> None:
    sdk = service.sdk()
    file_id = sdk.files.create(file=("rft.jsonl", prompts()), purpose="fine-tune").id
    method: Any = {
        "type": "reinforcement",
        "reinforcement": {
            "grader": GRADER,
            "hyperparameters": {"n_epochs": 3, "batch_size": 2, "compute_multiplier": 2},
        },
    }
    job = sdk.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=file_id,
        method=method,
        seed=42,
        extra_body={
            "lora": {"r": 8},
            "quantization": {"outlier_strategy": "top_abs"},
            "training": {
                "learning_rate": 0.1,
                "lr_scheduler": "constant",
                "max_seq_length": 64,
                "max_completion_tokens": 16,
            },
        },
    )
    done = wait_status(service, sdk, job.id, "succeeded", timeout=500)
    assert done.method.type == "reinforcement"
    assert done.fine_tuned_model
    events = sdk.fine_tuning.jobs.list_events(job.id, limit=1000).data
    metrics = sorted(
        (e.data for e in events if e.type == "metrics"),
        key=lambda d: d["step"],  # type: ignore[index]
    )
    rewards = [d["train_reward_mean"] for d in metrics]  # type: ignore[index]
    assert len(rewards) == 15
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.1
    assert sdk.fine_tuning.jobs.checkpoints.list(job.id).data
    sdk.close()


JUDGE = {
    "type": "score_model",
    "name": "judge",
    "model": "tiny-llama",
    "input": [{"role": "user", "content": "Does {{ sample.output_text }} say {{ item.letter }}?"}],
    "range": [0, 1000000],
    "sampling_params": {"max_completions_tokens": 8},
}


def test_a_model_grader_is_judged_by_an_inference_node_sharing_the_device(
    service: Service,
) -> None:
    """The judge is a node on this host's device: the training step that asks it must let the
    device go meanwhile (else both wait for each other until the request times out)."""
    if not service.infers:
        service.start_infer()
    sdk = service.sdk()

    def judged() -> bool:
        sample = sdk.fine_tuning.alpha.graders.run(
            grader=JUDGE,  # type: ignore[arg-type]
            model_sample="a",
            item={"letter": "a"},
        )
        return sample.metadata.errors.api_model_grader_server_error is False

    wait_for("the inference node to answer the judge", judged)
    file_id = sdk.files.create(file=("rft.jsonl", prompts(10)), purpose="fine-tune").id
    method: Any = {
        "type": "reinforcement",
        "reinforcement": {"grader": JUDGE, "hyperparameters": {"n_epochs": 1, "batch_size": 5}},
    }
    job = sdk.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=file_id,
        method=method,
        extra_body={"training": {"max_seq_length": 64, "max_completion_tokens": 8}},
    )
    wait_status(service, sdk, job.id, "succeeded", timeout=300)
    events = sdk.fine_tuning.jobs.list_events(job.id, limit=1000).data
    metrics = [e.data for e in events if e.type == "metrics"]
    assert metrics
    assert all("train_grader_error_fraction" in d for d in metrics)  # type: ignore[operator]
    sdk.close()
