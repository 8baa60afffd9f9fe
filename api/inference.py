"""Forward an authorised request to an inference node and pass its answer through.

Nodes come from the registry (`store.infer_nodes`): live ones, those holding the model first,
then the least busy. An unreachable node or a full queue moves on to the next; when every
queue is full the caller gets the node's 429 with `Retry-After`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from api.errors import error_response
from store import infer_nodes
from store.model_refs import ModelRef
from store.models import InferNode
from store.settings import Settings

logger = logging.getLogger(__name__)
PASSED_HEADERS = ("retry-after",)


def ranked_nodes(session: Session, settings: Settings, ref: ModelRef | None) -> list[InferNode]:
    """Live nodes in the order to try them."""
    nodes = infer_nodes.live_nodes(session, settings.infer_lease_seconds)
    return infer_nodes.rank_nodes(nodes, ref.keys() if ref else [])


def no_node() -> Response:
    """503 when no inference process is running."""
    return error_response(
        503,
        "No inference process is running: start one with `quaff infer` (`quaff serve` and "
        "`make run` start one beside the worker).",
        code="no_inference_node",
    )


def _passed(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() in PASSED_HEADERS}


async def _relay(client: httpx.AsyncClient, response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()
        await client.aclose()


async def forward(
    nodes: list[InferNode], settings: Settings, path: str, payload: dict[str, Any]
) -> Response:
    """POST `payload` to the first node that takes it; stream or return its answer as is."""
    if not nodes:
        return no_node()
    busy: httpx.Response | None = None
    for node in nodes:
        client = httpx.AsyncClient(timeout=httpx.Timeout(settings.infer_timeout_seconds, connect=3))
        request = client.build_request(
            "POST", f"{node.url}{path}", json=payload,
            headers={"Authorization": f"Bearer {node.token}"},
        )  # fmt: skip
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            logger.warning("inference node %s at %s unreachable: %s", node.id, node.url, exc)
            await client.aclose()
            continue
        if response.status_code == 429:
            await response.aread()
            await client.aclose()
            busy = response
            continue
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(
                _relay(client, response), status_code=response.status_code,
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
            )  # fmt: skip
        body = await response.aread()
        await client.aclose()
        return Response(body, status_code=response.status_code, headers=_passed(response),
                        media_type="application/json")  # fmt: skip
    if busy is not None:
        return JSONResponse(busy.json(), status_code=429, headers=_passed(busy))
    return no_node()
