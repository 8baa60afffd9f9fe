"""Status polls answered from memory: `GET /v1/fine_tuning/jobs/{id}` for `poll_cache_seconds`.

A script or a dashboard polls its job every second or so, and many may poll the same job. The
first poll of a job takes the normal path (routing, dependencies, a worker thread, the store) and
its JSON is kept; a poll of the same job by the same project within `poll_cache_seconds`, from a
key the key cache knows, is answered with those bytes before any of that runs. Once they are
older, one poll renews them while the others are still answered from memory (no stampede on the
store each time an entry expires). So a poll may be up to twice that much older than the store
(the worker's progress shows a moment later); a cancel, pause or resume through this API process
forgets the job at once, so its caller sees its own change, and so does each event an event stream
of the job sends (a client that reads `succeeded` or `paused` there and then polls sees it too).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import KeyCache
from store.auth import hash_key

_JOB = re.compile(r"^/v1/fine_tuning/jobs/([^/]+)(/[^/]*)?$")
MAX_ENTRIES = 10_000


class PollCacheMiddleware:
    """Pure ASGI middleware: answers fresh repeated job polls from memory."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Callable[[], KeyCache],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.keys, self.ttl, self.clock = app, keys, ttl, clock
        self._entries: dict[str, tuple[str, float, bytes]] = {}  # job id -> project, time, JSON
        self._changed: dict[str, float] = {}  # job id -> when a change through here last ended
        self._refreshing: set[str] = set()  # jobs whose entry one poll is renewing now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _JOB.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or self.ttl <= 0:
            await self.app(scope, receive, send)
            return
        job_id = match.group(1)
        if scope["method"] != "GET":  # cancel, pause, resume: the polls after it are fresh
            self._forget(job_id)
            try:
                await self.app(scope, receive, send)
            finally:
                self._forget(job_id)
            return
        if match.group(2) == "/events" and _streams(scope):
            try:
                await self.app(scope, receive, self._forgetting(send, job_id))
            finally:
                self._forget(job_id)
            return
        project = self._project(scope)
        if match.group(2) is not None or scope.get("query_string") or project is None:
            await self.app(scope, receive, send)
            return
        entry = self._entries.get(job_id)
        if entry is not None and entry[0] == project:
            age = self.clock() - entry[1]
            if age < self.ttl or (job_id in self._refreshing and age < 2 * self.ttl):
                await _send_json(send, entry[2])
                return
        if job_id in self._refreshing:  # nothing to serve: take the normal path, keep nothing
            await self.app(scope, receive, send)
            return
        self._refreshing.add(job_id)
        try:
            await self.app(scope, receive, self._keeping(send, job_id, project))
        finally:
            self._refreshing.discard(job_id)

    def _forget(self, job_id: str) -> None:
        """Drop the job's entry; a poll that began before now keeps nothing."""
        self._entries.pop(job_id, None)
        if len(self._changed) >= MAX_ENTRIES:
            self._changed.clear()
        self._changed[job_id] = self.clock()

    def _project(self, scope: Scope) -> str | None:
        """The project of a bearer key the key cache holds now (None: the normal path decides)."""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                scheme, _, key = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not key.strip():
                    return None
                principal = self.keys().get(hash_key(key.strip()))
                return None if principal is None else principal.id
        return None

    def _forgetting(self, send: Send, job_id: str) -> Send:
        """`send` of an event stream, forgetting the job as each event goes out (it changed)."""

        async def forget(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body", b"")[:5] == b"data:":
                self._forget(job_id)
            await send(message)

        return forget

    def _keeping(self, send: Send, job_id: str, project: str) -> Send:
        """`send`, keeping a 200's JSON body for later polls."""
        started = self.clock()
        status, chunks = 0, list[bytes]()

        async def keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                chunks.append(message.get("body", b""))
                fresh = self._changed.get(job_id, float("-inf")) < started
                if not message.get("more_body", False) and fresh:
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[job_id] = (project, started, b"".join(chunks))
            await send(message)

        return keep


def _streams(scope: Scope) -> bool:
    """Whether a request asks for an event stream (`stream=true` in its query)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(v.lower() == "true" for v in query.get("stream", ()))


async def _send_json(send: Send, body: bytes) -> None:
    """A 200 with a JSON body."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
