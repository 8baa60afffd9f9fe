"""Sending webhook deliveries: Standard Webhooks signatures, one try, retries with backoff, and
the sender thread that the worker's main process runs (never the request path)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from store.ids import now_s
from store.models import WebhookDelivery, WebhookEndpoint
from store.settings import Settings
from store.webhooks import host_allowed

logger = logging.getLogger(__name__)
MAX_RETRY_SECONDS = 3600.0
BATCH = 20
USER_AGENT = "Quaff-Webhooks/1"


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, the key being the decoded `whsec_`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signed_headers(endpoint: WebhookEndpoint, message_id: str, body: bytes) -> dict[str, str]:
    """The webhook-id, -timestamp and -signature headers (both secrets while the old one lives)."""
    timestamp = now_s()
    keys = [endpoint.secret]
    if endpoint.previous_secret and (endpoint.previous_secret_until or 0) > timestamp:
        keys.append(endpoint.previous_secret)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, message_id, timestamp, body) for k in keys),
    }


def post_event(
    client: httpx.Client, settings: Settings, endpoint: WebhookEndpoint, event_id: str, body: str
) -> tuple[int | None, str | None]:
    """One signed POST: (HTTP status, None) or (status or None, what went wrong)."""
    host = httpx.URL(endpoint.url).host
    if not host_allowed(host, settings.webhook_allowed_hosts):
        return None, f"host '{host}' is not allowed (QUAFF_WEBHOOK_ALLOWED_HOSTS)"
    data = body.encode()
    try:
        response = client.post(
            endpoint.url,
            content=data,
            headers=signed_headers(endpoint, event_id, data),
            timeout=settings.webhook_timeout_seconds,
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"the endpoint answered HTTP {response.status_code}"


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before try `attempts + 1`: the first wait doubled per try, at most an hour."""
    return float(min(settings.webhook_retry_seconds * 2 ** (attempts - 1), MAX_RETRY_SECONDS))


def claim_due(session: Session, settings: Settings) -> list[str]:
    """Take up to BATCH due deliveries (compare-and-set on `next_attempt_at`, so several senders
    never send one twice); commits. Returns their ids."""
    now = time.time()
    due = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(BATCH)
    ).all()
    lease = now + settings.webhook_timeout_seconds + 30
    claimed = []
    for delivery_id, at in due:
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.next_attempt_at == at)
            .values(next_attempt_at=lease)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            claimed.append(delivery_id)
    session.commit()
    return claimed


def attempt(session: Session, settings: Settings, client: httpx.Client, delivery_id: str) -> None:
    """Send one claimed delivery and record the outcome (delivered, retry later, or failed)."""
    row = session.get(WebhookDelivery, delivery_id)
    endpoint = session.get(WebhookEndpoint, row.endpoint_id) if row is not None else None
    if row is None or endpoint is None:
        return
    status, error = post_event(client, settings, endpoint, row.event_id, row.payload)
    row.attempts += 1
    row.response_status, row.error = status, error
    if error is None:
        row.status, row.next_attempt_at, row.finished_at = "delivered", None, now_s()
    elif row.attempts >= settings.webhook_max_attempts:
        row.status, row.next_attempt_at, row.finished_at = "failed", None, now_s()
    else:
        row.next_attempt_at = time.time() + retry_delay(settings, row.attempts)
    session.commit()


def deliver_due(
    factory: Callable[[], AbstractContextManager[Session]], settings: Settings, client: httpx.Client
) -> int:
    """Send the deliveries due now (in a session from `factory`); returns how many were tried."""
    with factory() as session:
        claimed = claim_due(session, settings)
        for delivery_id in claimed:
            attempt(session, settings, client, delivery_id)
    return len(claimed)


class WebhookSender(threading.Thread):
    """Sends due deliveries every `webhook_poll_seconds` until stopped (a daemon thread)."""

    def __init__(
        self, settings: Settings, factory: Callable[[], AbstractContextManager[Session]]
    ) -> None:
        super().__init__(name="quaff-webhook-sender", daemon=True)
        self.settings, self.factory = settings, factory
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Poll and send; a failure is logged and the loop goes on."""
        with httpx.Client(follow_redirects=False) as client:
            while not self._stop_event.is_set():
                try:
                    busy = deliver_due(self.factory, self.settings, client)
                except SQLAlchemyError as exc:
                    logger.warning("webhook delivery pass failed: %s", exc)
                    busy = 0
                if not busy:
                    self._stop_event.wait(self.settings.webhook_poll_seconds)

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop_event.set()
        self.join(timeout=5)
