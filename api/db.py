"""One request's store work in one call: a gate slot, one session and one worker thread.

Handlers are `async` and hand the store a plain function of a session: it runs in a worker thread
with a fresh session that is closed before the thread returns, under a gate slot, and its result
is serialised to JSON in that same thread. So a request holds at most one connection, for as long
as its store work takes, and crosses to a thread once (not once per dependency, handler, response
check and clean-up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from api.gate import Gate

T = TypeVar("T")


def _in_session(factory: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    with factory() as session:
        return work(session)


def _as_json(factory: sessionmaker[Session], work: Callable[[Session], BaseModel]) -> bytes:
    with factory() as session:
        return work(session).model_dump_json().encode("utf-8")


class Db:
    """The store, as a request sees it."""

    def __init__(self, gate: Gate, factory: sessionmaker[Session]) -> None:
        self.gate, self.factory = gate, factory

    async def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in a worker thread, under a gate slot; the session is closed after."""
        return await self.gate.run(_in_session, self.factory, work)

    def run_here(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in the calling thread (already a worker thread), with no gate slot."""
        return _in_session(self.factory, work)

    async def respond(self, work: Callable[[Session], BaseModel], status: int = 200) -> Response:
        """`work(session)`'s wire object as the JSON response (serialised in the thread too)."""
        body = await self.gate.run(_as_json, self.factory, work)
        return Response(body, status_code=status, media_type="application/json")


async def get_db(request: Request) -> Db:
    """The request's view of the store."""
    return Db(request.app.state.gate, request.app.state.session_factory)


DbDep = Annotated[Db, Depends(get_db)]
