"""Webhook endpoints of a project (create, list, update, rotate, delete), the hosts they may use,
and the deliveries a job's state change writes in the same transaction (an outbox)."""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import socket
import time
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.errors import InvalidRequestError
from store.ids import new_id, now_s
from store.models import Job, WebhookDelivery, WebhookEndpoint
from store.owned import get_owned
from store.pages import FIRST_PAGE, Cursor, Page, page

# the job statuses that send an event, and its type (`paused` is ours, OpenAI has none)
JOB_EVENT_TYPES: dict[str, str] = {
    "succeeded": "fine_tuning.job.succeeded",
    "failed": "fine_tuning.job.failed",
    "cancelled": "fine_tuning.job.cancelled",
    "paused": "fine_tuning.job.paused",
}
EVENT_TYPES: tuple[str, ...] = tuple(JOB_EVENT_TYPES.values())
KEEP_OLD_SECRET_SECONDS = 24 * 3600


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form the SDK decodes: `whsec_<base64>`."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_hint(secret: str) -> str:
    """The masked secret shown after creation."""
    return f"whsec_...{secret[-4:]}"


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Whether every address `host` resolves to is loopback or in `allowed` (names, CIDRs, '*')."""
    names = {entry.lower() for entry in allowed}
    if "*" in names or host.lower().strip("[]") in names:
        return True
    networks = []
    for entry in allowed:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None)
    except (OSError, UnicodeError):
        return False
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return bool(addresses) and all(
        ip.is_loopback or any(ip in net for net in networks) for ip in addresses
    )


def check_url(url: str, allowed: list[str]) -> str:
    """The URL if it is http(s) on an allowed host; InvalidRequestError (param `url`) if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            "Invalid value for 'url': an http:// or https:// URL is required.", param="url"
        )
    if not host_allowed(parts.hostname, allowed):
        raise InvalidRequestError(
            f"Webhook URL host '{parts.hostname}' is not allowed: endpoints must be on a loopback "
            "address unless the server's QUAFF_WEBHOOK_ALLOWED_HOSTS names the host or network.",
            param="url",
            code="webhook_host_not_allowed",
        )
    return url


def check_event_types(event_types: list[str], param: str = "event_types") -> list[str]:
    """The event types, each one this service sends; InvalidRequestError otherwise."""
    if not event_types:
        raise InvalidRequestError(f"'{param}' must name at least one event type", param=param)
    for event_type in event_types:
        if event_type not in EVENT_TYPES:
            raise InvalidRequestError(
                f"Invalid value for '{param}': '{event_type[:64]}' is not an event this "
                f"service sends; it sends: {', '.join(EVENT_TYPES)}.",
                param=param,
            )
    return list(dict.fromkeys(event_types))


def create_endpoint(
    session: Session, project_id: str, *, name: str, url: str, event_types: list[str]
) -> WebhookEndpoint:
    """A new endpoint (the URL and types already checked); commits."""
    now = now_s()
    row = WebhookEndpoint(
        id=new_id("we"),
        project_id=project_id,
        name=name,
        url=url,
        event_types=event_types,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.commit()
    return row


def get_endpoint(session: Session, project_id: str, endpoint_id: str) -> WebhookEndpoint:
    """The project's endpoint; NotFoundError otherwise."""
    return get_owned(session, WebhookEndpoint, endpoint_id, project_id)


def list_endpoints(
    session: Session, project_id: str, cursor: Cursor = FIRST_PAGE
) -> Page[WebhookEndpoint]:
    """A page of the project's endpoints, newest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.project_id == project_id)
    return page(session, query, WebhookEndpoint.id, cursor)


def update_endpoint(
    session: Session,
    row: WebhookEndpoint,
    *,
    name: str | None = None,
    url: str | None = None,
    event_types: list[str] | None = None,
) -> WebhookEndpoint:
    """Change what is given (already checked); `updated_at` moves only on a real change."""
    changes = {"name": name, "url": url, "event_types": event_types}
    changed = False
    for field, value in changes.items():
        if value is not None and getattr(row, field) != value:
            setattr(row, field, value)
            changed = True
    if changed:
        row.updated_at = now_s()
    session.commit()
    return row


def rotate_secret(session: Session, row: WebhookEndpoint, *, keep_old: bool) -> WebhookEndpoint:
    """A new secret; with `keep_old`, deliveries are signed with both for 24 hours."""
    now = now_s()
    row.previous_secret = row.secret if keep_old else None
    row.previous_secret_until = now + KEEP_OLD_SECRET_SECONDS if keep_old else None
    row.secret, row.updated_at = new_secret(), now
    session.commit()
    return row


def delete_endpoint(session: Session, row: WebhookEndpoint) -> None:
    """Remove the endpoint and its delivery log."""
    session.delete(row)
    session.commit()


def list_deliveries(
    session: Session, endpoint_id: str, cursor: Cursor = FIRST_PAGE
) -> Page[WebhookDelivery]:
    """A page of the endpoint's delivery log, newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    return page(session, query, WebhookDelivery.id, cursor)


def event_payload(event_id: str, event_type: str, object_id: str, created_at: int) -> str:
    """The event's JSON, in OpenAI's webhook event shape."""
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created_at": created_at,
        "data": {"id": object_id},
    }
    return json.dumps(body, separators=(",", ":"))


def record_job_event(session: Session, job: Job, status: str) -> int:
    """Queue the event of `job` reaching `status` for each subscribed endpoint (flushed with the
    state change, so it is sent only once that commits); returns how many were queued."""
    event_type = JOB_EVENT_TYPES.get(status)
    if event_type is None:
        return 0
    query = select(WebhookEndpoint).where(WebhookEndpoint.project_id == job.project_id)
    endpoints = [e for e in session.scalars(query) if event_type in e.event_types]
    if not endpoints:
        return 0
    event_id, now = new_id("evt"), now_s()
    payload = event_payload(event_id, event_type, job.id, now)
    for endpoint in endpoints:
        session.add(
            WebhookDelivery(
                id=new_id("whd"),
                endpoint_id=endpoint.id,
                event_id=event_id,
                event_type=event_type,
                object_id=job.id,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=time.time(),
                created_at=now,
            )
        )
    session.flush()
    return len(endpoints)
