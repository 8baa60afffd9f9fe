"""Webhook deliveries: queued with the job's state, signed so the official SDK accepts them,
retried with backoff, logged, and never sent to a host the settings do not allow."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store import jobs, webhooks
from store.db import session_factory
from store.errors import InvalidRequestError
from store.models import WebhookDelivery, WebhookEndpoint
from store.settings import Settings
from store.webhook_delivery import WebhookSender, deliver_due, retry_delay
from tests.helpers import KeyedProject, queued_job
from tests.processes import wait_for
from tests.webhook_receiver import Received, webhook_receiver


def endpoint(session: Session, keyed: KeyedProject, url: str, *types: str) -> WebhookEndpoint:
    """An endpoint of the project for `types` (default: every type)."""
    return webhooks.create_endpoint(
        session,
        keyed.project.id,
        name="hook",
        url=url,
        event_types=list(types or webhooks.EVENT_TYPES),
    )


def deliveries(session: Session, row: WebhookEndpoint) -> list[WebhookDelivery]:
    """The endpoint's deliveries as stored now, oldest first."""
    session.expire_all()
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id)
    return list(session.scalars(query.order_by(WebhookDelivery.id)))


def make_due(session: Session, row: WebhookEndpoint) -> None:
    """Bring the endpoint's pending retries forward to now."""
    for delivery in deliveries(session, row):
        if delivery.status == "pending":
            delivery.next_attempt_at = time.time()
    session.commit()


def send_all(settings: Settings) -> int:
    """One delivery pass (over the whole test database: assert per endpoint, not on counts)."""
    with httpx.Client() as client:
        return deliver_due(session_factory(settings), settings, client)


def unwrap(received: Received, index: int, secret: str) -> object:
    headers, body = received.requests[index]
    return OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=secret)


def test_a_cancelled_job_is_delivered_after_commit_and_verifies_with_the_sdk(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    with webhook_receiver() as received:
        hook = endpoint(db_session, keyed_project, received.url)
        job = queued_job(db_session, quaff_settings, keyed_project)
        other = sessionmaker(bind=db_session.get_bind())()
        # other tests' due retries go first: the pass under this test's open write transaction
        # must have nothing to write (on SQLite it would wait for the lock this test holds)
        while send_all(quaff_settings):
            pass
        jobs.transition(db_session, job, "cancelled", reason="cancelled by the test")
        send_all(quaff_settings)
        assert received.requests == []  # not committed yet: nothing to send
        db_session.commit()
        send_all(quaff_settings)
        event = unwrap(received, 0, hook.secret)
        assert event.type == "fine_tuning.job.cancelled"  # type: ignore[attr-defined]
        assert event.data.id == job.id  # type: ignore[attr-defined]
        headers, _ = received.requests[0]
        assert headers["webhook-id"] == event.id  # type: ignore[attr-defined]
        with pytest.raises(openai.InvalidWebhookSignatureError):
            unwrap(received, 0, webhooks.new_secret())
        [row] = deliveries(other, hook)
        assert (row.status, row.attempts, row.response_status) == ("delivered", 1, 200)
        other.close()


def test_only_subscribed_types_are_queued(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    hook = endpoint(db_session, keyed_project, "http://127.0.0.1:9/x", "fine_tuning.job.succeeded")
    paused = endpoint(db_session, keyed_project, "http://127.0.0.1:9/y", "fine_tuning.job.paused")
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.pause_job(db_session, job)
    db_session.commit()
    assert deliveries(db_session, hook) == []
    [row] = deliveries(db_session, paused)
    assert json.loads(row.payload)["type"] == "fine_tuning.job.paused"


def test_a_failing_endpoint_is_retried_with_backoff_then_failed(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(
        update={"webhook_max_attempts": 3, "webhook_retry_seconds": 60.0}
    )
    with webhook_receiver() as received:
        received.answers = [500, 503, 500]
        hook = endpoint(db_session, keyed_project, received.url)
        job = queued_job(db_session, settings, keyed_project)
        jobs.cancel_job(db_session, job)
        send_all(settings)
        [row] = deliveries(db_session, hook)
        assert (row.status, row.attempts, row.response_status) == ("pending", 1, 500)
        assert row.next_attempt_at is not None
        assert row.next_attempt_at > time.time() + 50
        send_all(settings)
        assert len(received.requests) == 1  # not due yet
        make_due(db_session, hook)
        send_all(settings)
        make_due(db_session, hook)
        send_all(settings)
        [row] = deliveries(db_session, hook)
        assert (row.status, row.attempts) == ("failed", 3)
        assert "HTTP 500" in (row.error or "")
        ids = {headers["webhook-id"] for headers, _ in received.requests}
        assert len(received.requests) == 3
        assert len(ids) == 1
    assert [retry_delay(settings, n) for n in (1, 2, 3)] == [60.0, 120.0, 240.0]
    assert retry_delay(settings, 30) == 3600.0


def test_the_sender_thread_delivers_and_a_rotated_secret_still_verifies(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"webhook_poll_seconds": 0.05})
    with webhook_receiver() as received:
        hook = endpoint(db_session, keyed_project, received.url)
        old = hook.secret
        webhooks.rotate_secret(db_session, hook, keep_old=True)
        sender = WebhookSender(settings, session_factory(settings))
        sender.start()
        try:
            jobs.cancel_job(db_session, queued_job(db_session, settings, keyed_project))
            wait_for("the webhook", lambda: received.requests, timeout=30)
        finally:
            sender.stop()
        assert unwrap(received, 0, old) is not None
        assert unwrap(received, 0, hook.secret) is not None


def test_urls_must_be_on_loopback_unless_allowed() -> None:
    assert webhooks.check_url("http://127.0.0.1:8080/hook", [])
    assert webhooks.check_url("http://localhost/hook", [])
    assert webhooks.check_url("http://[::1]:9/hook", [])
    for url in ("http://10.1.2.3/hook", "https://example.invalid/hook", "ftp://127.0.0.1/x"):
        with pytest.raises(InvalidRequestError) as refused:
            webhooks.check_url(url, [])
        assert refused.value.param == "url"
    assert webhooks.check_url("http://10.1.2.3/hook", ["10.0.0.0/8"])
    assert webhooks.check_url("https://hooks.example.invalid/x", ["hooks.example.invalid"])
    assert webhooks.check_url("https://any.example.invalid/x", ["*"])


def test_a_host_disallowed_later_is_not_sent_to(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    hook = endpoint(db_session, keyed_project, "http://10.9.9.9:9/hook")  # allowed once, not now
    jobs.cancel_job(db_session, queued_job(db_session, quaff_settings, keyed_project))
    send_all(quaff_settings)
    [row] = deliveries(db_session, hook)
    assert row.response_status is None
    assert "not allowed" in (row.error or "")


def test_a_worker_handing_its_job_back_sends_no_paused_event(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    hook = endpoint(db_session, keyed_project, "http://127.0.0.1:9/x", "fine_tuning.job.paused")
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.transition(db_session, job, "running")
    jobs.transition(db_session, job, "paused", notify=False)
    jobs.transition(db_session, job, "queued")
    db_session.commit()
    assert deliveries(db_session, hook) == []
