"""The guard sheds load: past `max_pending_requests` unanswered requests, a 503 at once."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from api.guard import RequestGuardMiddleware


def test_requests_past_the_pending_limit_get_a_503_at_once() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = RequestGuardMiddleware(slow_app, max_json_bytes=100, max_pending=2, retry_after=3)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
            held = [asyncio.create_task(http.get("/v1/a")) for _ in range(2)]
            await asyncio.sleep(0.05)
            assert guard.pending == 2
            shed = await http.get("/v1/a")
            release.set()
            done = await asyncio.gather(*held)
            assert guard.pending == 0
            return [shed, *done]

    shed, *done = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "3"
    assert shed.json()["error"]["code"] == "server_busy"
    assert [r.status_code for r in done] == [200, 200]


def test_one_key_cannot_take_every_place_and_its_refusals_are_held_back() -> None:
    release = asyncio.Event()
    delays: list[float] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    guard = RequestGuardMiddleware(
        slow_app, max_json_bytes=100, max_pending=10, retry_after=1,
        max_pending_per_key=2, shed_delay=0.5, sleep=fake_sleep,
    )  # fmt: skip
    hog, other = {"Authorization": "Bearer hog"}, {"Authorization": "Bearer other"}

    async def scenario() -> tuple[httpx.Response, list[httpx.Response]]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
            held = [asyncio.create_task(http.get("/v1/a", headers=hog)) for _ in range(2)]
            held.append(asyncio.create_task(http.get("/v1/a", headers=other)))
            await asyncio.sleep(0.05)
            assert guard.pending == 3
            shed = await http.get("/v1/a", headers=hog)  # the hog's third: refused
            release.set()
            done = await asyncio.gather(*held)
            assert (guard.pending, guard.per_key) == (0, {})
            return shed, done

    shed, done = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert delays == [0.5]  # held back before it was sent
    assert [r.status_code for r in done] == [200, 200, 200]  # the other key got its place
