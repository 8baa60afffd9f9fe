"""Webhooks end to end: a real worker finishes a tiny-llama job and its sender delivers
`fine_tuning.job.succeeded` to a local server, where the official SDK verifies it."""

from __future__ import annotations

import pytest

from tests.processes import Service, wait_for
from tests.webhook_receiver import webhook_receiver
from tests.worker.test_e2e import create_job, training_data, wait_status

pytestmark = pytest.mark.slow


def test_a_succeeded_job_is_delivered_and_verifies(service: Service) -> None:
    sdk = service.sdk()
    with webhook_receiver() as received:
        hook = sdk.webhooks.create(
            name="e2e", url=received.url, event_types=["fine_tuning.job.succeeded"]
        )
        file_id = sdk.files.create(file=("t.jsonl", training_data(10)), purpose="fine-tune").id
        job_id = create_job(sdk, file_id, epochs=1, batch_size=5)
        wait_status(service, sdk, job_id, "succeeded")
        wait_for("the webhook", lambda: received.requests, timeout=60)
        headers, body = received.requests[0]
        event = sdk.webhooks.unwrap(body, headers, secret=hook.signing_secret)
        assert event.type == "fine_tuning.job.succeeded"
        assert event.data.id == job_id
        log = sdk.get(f"/webhook_endpoints/{hook.id}/deliveries", cast_to=object)
        assert [d["status"] for d in log["data"]] == ["delivered"]  # type: ignore[index]
    sdk.close()
