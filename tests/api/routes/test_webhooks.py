"""Webhook endpoints through the official SDK's `client.webhooks`: create, list, retrieve, update,
rotate, test, delete; hosts and event types checked; the delivery log."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI
from sqlalchemy.orm import Session

from api.main import create_app
from store import jobs
from store.settings import Settings
from tests.helpers import KeyedProject, make_project, queued_job
from tests.processes import serve_in_thread
from tests.webhook_receiver import webhook_receiver


@pytest.fixture
def sdk(quaff_settings: Settings, keyed_project: KeyedProject) -> Iterator[OpenAI]:
    """An SDK client on a real server, with the project's key and no retries."""
    with serve_in_thread(create_app(quaff_settings)) as url:
        client = OpenAI(base_url=url, api_key=keyed_project.key, max_retries=0)
        yield client
        client.close()


def test_endpoint_lifecycle_through_the_sdk(sdk: OpenAI) -> None:
    with webhook_receiver() as received:
        created = sdk.webhooks.create(
            name="jobs", url=received.url, event_types=["fine_tuning.job.succeeded"]
        )
        assert created.signing_secret.startswith("whsec_")
        assert created.signing_secret_hint == f"whsec_...{created.signing_secret[-4:]}"
        assert [e.id for e in sdk.webhooks.list()] == [created.id]
        fetched = sdk.webhooks.retrieve(created.id)
        assert fetched.url == received.url
        assert "signing_secret" not in (fetched.model_extra or {})
        updated = sdk.webhooks.update(
            created.id, event_types=["fine_tuning.job.failed", "fine_tuning.job.cancelled"]
        )
        assert updated.event_types == ["fine_tuning.job.failed", "fine_tuning.job.cancelled"]
        rotated = sdk.webhooks.rotate_secret(created.id)
        assert rotated.signing_secret != created.signing_secret
        result = sdk.webhooks.test(created.id, event_type="fine_tuning.job.failed")
        assert (result.status_code, result.event_type) == (200, "fine_tuning.job.failed")
        headers, body = received.requests[0]
        event = sdk.webhooks.unwrap(body, headers, secret=rotated.signing_secret)
        assert event.type == "fine_tuning.job.failed"
        assert sdk.webhooks.event_types.list().data[:3] == [
            "fine_tuning.job.succeeded",
            "fine_tuning.job.failed",
            "fine_tuning.job.cancelled",
        ]
        deleted = sdk.webhooks.delete(created.id)
        assert deleted.deleted is True
        assert deleted.id == created.id
        with pytest.raises(openai.NotFoundError):
            sdk.webhooks.retrieve(created.id)


def test_hosts_and_event_types_are_checked(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as remote:
        sdk.webhooks.create(
            name="x", url="https://10.0.0.1/hook", event_types=["fine_tuning.job.failed"]
        )
    assert remote.value.body["param"] == "url"  # type: ignore[index]
    assert remote.value.body["code"] == "webhook_host_not_allowed"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as unsent:
        sdk.webhooks.create(name="x", url="http://127.0.0.1:9/", event_types=["batch.completed"])
    assert unsent.value.body["param"] == "event_types"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as missing:
        sdk.webhooks.create(name="x", url="http://127.0.0.1:9/", event_types=[])
    assert missing.value.body["param"] == "event_types"  # type: ignore[index]


def test_the_setting_widens_the_allowed_hosts(
    quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    wide = quaff_settings.model_copy(update={"webhook_allowed_hosts": ["10.0.0.0/8"]})
    with serve_in_thread(create_app(wide)) as url:
        client = OpenAI(base_url=url, api_key=keyed_project.key, max_retries=0)
        made = client.webhooks.create(
            name="lan", url="https://10.0.0.1/hook", event_types=["fine_tuning.job.failed"]
        )
        assert made.url == "https://10.0.0.1/hook"
        client.close()


def test_the_delivery_log_and_other_projects(
    sdk: OpenAI, db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    hook = sdk.webhooks.create(
        name="log", url="http://127.0.0.1:9/hook", event_types=["fine_tuning.job.cancelled"]
    )
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.cancel_job(db_session, job)
    log = sdk.get(f"/webhook_endpoints/{hook.id}/deliveries", cast_to=object)
    [delivery] = log["data"]  # type: ignore[index]
    assert delivery["event_type"] == "fine_tuning.job.cancelled"
    assert delivery["data"] == {"id": job.id}
    assert delivery["status"] == "pending"
    stranger = make_project(db_session)
    other = OpenAI(base_url=str(sdk.base_url), api_key=stranger.key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.webhooks.retrieve(hook.id)
    assert list(other.webhooks.list()) == []
    other.close()
