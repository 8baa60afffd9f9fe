"""Webhook endpoints, as the SDK's `client.webhooks` calls them, plus each one's delivery log
(ours); the events are sent by the worker, never here."""

from __future__ import annotations

from typing import Literal

import httpx
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.db import DbDep
from api.deps import CurrentProject, SettingsDep
from api.pages import PageDep, list_object
from api.schemas import CursorList
from store import webhooks
from store.ids import new_id, now_s
from store.models import WebhookDelivery, WebhookEndpoint
from store.webhook_delivery import post_event

router = APIRouter(prefix="/v1", tags=["webhooks"])
_FORBID = ConfigDict(extra="forbid")


class EndpointCreate(BaseModel):
    """`client.webhooks.create(...)`."""

    model_config = _FORBID
    name: str = Field(min_length=1, max_length=256)
    url: str = Field(min_length=1, max_length=2048)
    event_types: list[str]


class EndpointUpdate(BaseModel):
    """`client.webhooks.update(...)`: what is given changes."""

    model_config = _FORBID
    name: str | None = Field(default=None, min_length=1, max_length=256)
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[str] | None = None


class RotateBody(BaseModel):
    """`client.webhooks.rotate_secret(...)`."""

    model_config = _FORBID
    keep_old_secret_active_for_24_hours: bool = False


class SampleBody(BaseModel):
    """`client.webhooks.test(...)`."""

    model_config = _FORBID
    event_type: str


class EndpointObject(BaseModel):
    """`object: "webhook_endpoint"` (the secret itself only at creation and rotation)."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    name: str
    url: str
    event_types: list[str]
    signing_secret_hint: str
    created_at: int
    updated_at: int


class EndpointWithSecret(EndpointObject):
    """The endpoint with its `whsec_...` signing secret."""

    signing_secret: str


class EndpointDeleted(BaseModel):
    """`object: "webhook_endpoint.deleted"`."""

    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class SampleResult(BaseModel):
    """`object: "webhook_endpoint.test"`: the status the endpoint answered."""

    object: Literal["webhook_endpoint.test"] = "webhook_endpoint.test"
    webhook_endpoint_id: str
    event_type: str
    status_code: int
    success: Literal[True] = True
    error: str | None = None


class DeliveryObject(BaseModel):
    """`object: "webhook_delivery"` (ours): one event sent to one endpoint, and how it went."""

    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    webhook_endpoint_id: str
    event_id: str
    event_type: str
    data: dict[str, str]
    status: str
    attempts: int
    next_attempt_at: int | None
    response_status_code: int | None
    error: str | None
    created_at: int
    finished_at: int | None


class EndpointList(CursorList[EndpointObject]):
    """A page of webhook endpoints."""


class DeliveryList(CursorList[DeliveryObject]):
    """A page of an endpoint's deliveries."""


class EventTypeList(BaseModel):
    """`client.webhooks.event_types.list()`."""

    object: Literal["list"] = "list"
    data: list[str]


def endpoint_object(row: WebhookEndpoint) -> EndpointObject:
    """The wire form of an endpoint, without its secret."""
    return EndpointObject(
        id=row.id,
        name=row.name,
        url=row.url,
        event_types=list(row.event_types),
        signing_secret_hint=webhooks.secret_hint(row.secret),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def with_secret(row: WebhookEndpoint) -> EndpointWithSecret:
    """The wire form with the secret (creation and rotation only)."""
    return EndpointWithSecret(**endpoint_object(row).model_dump(), signing_secret=row.secret)


def delivery_object(row: WebhookDelivery) -> DeliveryObject:
    """The wire form of a delivery."""
    due = row.next_attempt_at
    return DeliveryObject(
        id=row.id,
        webhook_endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        data={"id": row.object_id},
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=int(due) if due is not None else None,
        response_status_code=row.response_status,
        error=row.error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


@router.post("/webhook_endpoints", response_model=EndpointWithSecret)
async def create_endpoint(
    body: EndpointCreate, project: CurrentProject, db: DbDep, settings: SettingsDep
) -> Response:
    """A new endpoint on an allowed host; its signing secret is shown this once."""
    url = webhooks.check_url(body.url, settings.webhook_allowed_hosts)
    types = webhooks.check_event_types(body.event_types)

    def work(session: Session) -> EndpointWithSecret:
        row = webhooks.create_endpoint(
            session, project.id, name=body.name, url=url, event_types=types
        )
        return with_secret(row)

    return await db.respond(work)


@router.get("/webhook_endpoints", response_model=EndpointList)
async def list_endpoints(project: CurrentProject, db: DbDep, cursor: PageDep) -> Response:
    """The project's endpoints, newest first."""

    def work(session: Session) -> EndpointList:
        found = webhooks.list_endpoints(session, project.id, cursor)
        return list_object(EndpointList, found, endpoint_object)

    return await db.respond(work)


@router.get("/webhook_endpoints/{endpoint_id}", response_model=EndpointObject)
async def retrieve_endpoint(endpoint_id: str, project: CurrentProject, db: DbDep) -> Response:
    """One endpoint."""
    return await db.respond(
        lambda s: endpoint_object(webhooks.get_endpoint(s, project.id, endpoint_id))
    )


@router.post("/webhook_endpoints/{endpoint_id}", response_model=EndpointObject)
async def update_endpoint(
    endpoint_id: str,
    body: EndpointUpdate,
    project: CurrentProject,
    db: DbDep,
    settings: SettingsDep,
) -> Response:
    """Change the name, URL (checked as at creation) or event types."""
    url = webhooks.check_url(body.url, settings.webhook_allowed_hosts) if body.url else None
    types = webhooks.check_event_types(body.event_types) if body.event_types is not None else None

    def work(session: Session) -> EndpointObject:
        row = webhooks.get_endpoint(session, project.id, endpoint_id)
        webhooks.update_endpoint(session, row, name=body.name, url=url, event_types=types)
        return endpoint_object(row)

    return await db.respond(work)


@router.delete("/webhook_endpoints/{endpoint_id}", response_model=EndpointDeleted)
async def delete_endpoint(endpoint_id: str, project: CurrentProject, db: DbDep) -> Response:
    """Remove an endpoint and its delivery log."""

    def work(session: Session) -> EndpointDeleted:
        webhooks.delete_endpoint(session, webhooks.get_endpoint(session, project.id, endpoint_id))
        return EndpointDeleted(id=endpoint_id)

    return await db.respond(work)


@router.post("/webhook_endpoints/{endpoint_id}/rotate_secret", response_model=EndpointWithSecret)
async def rotate_secret(
    endpoint_id: str, project: CurrentProject, db: DbDep, body: RotateBody | None = None
) -> Response:
    """A new secret, shown this once; the old one signs too for 24 hours if asked."""
    keep = body.keep_old_secret_active_for_24_hours if body else False

    def work(session: Session) -> EndpointWithSecret:
        row = webhooks.get_endpoint(session, project.id, endpoint_id)
        return with_secret(webhooks.rotate_secret(session, row, keep_old=keep))

    return await db.respond(work)


@router.post("/webhook_endpoints/{endpoint_id}/test", response_model=SampleResult)
async def test_endpoint(
    endpoint_id: str, body: SampleBody, project: CurrentProject, db: DbDep, settings: SettingsDep
) -> SampleResult:
    """Send one signed sample event now and report the endpoint's answer (not logged)."""
    event_type = webhooks.check_event_types([body.event_type], param="event_type")[0]
    row = await db.run(lambda s: webhooks.get_endpoint(s, project.id, endpoint_id))
    event_id = new_id("evt")
    payload = webhooks.event_payload(event_id, event_type, "ftjob-test", now_s())
    with httpx.Client(follow_redirects=False) as client:
        status, error = await run_in_threadpool(
            post_event, client, settings, row, event_id, payload
        )
    return SampleResult(
        webhook_endpoint_id=row.id, event_type=event_type, status_code=status or 0, error=error
    )


@router.get("/webhook_endpoints/{endpoint_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    endpoint_id: str, project: CurrentProject, db: DbDep, cursor: PageDep
) -> Response:
    """The endpoint's delivery log, newest first (ours)."""

    def work(session: Session) -> DeliveryList:
        webhooks.get_endpoint(session, project.id, endpoint_id)
        found = webhooks.list_deliveries(session, endpoint_id, cursor)
        return list_object(DeliveryList, found, delivery_object)

    return await db.respond(work)


@router.get("/webhook_event_types", response_model=EventTypeList)
async def list_event_types(project: CurrentProject) -> EventTypeList:
    """The event types this service sends."""
    return EventTypeList(data=list(webhooks.EVENT_TYPES))
