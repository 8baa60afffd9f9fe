"""The load benchmark's clients: polling clients and SSE clients on loopback keep-alive
connections, each phase's latencies and outcomes tallied."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TIMEOUT = 30.0
CLIENTS_PER_KEY = 10
# Closed-loop pollers past capacity: "burst" ones retry a 503 at once, "polite" ones wait for its
# Retry-After.
OVERLOAD = ("burst", "polite")


@dataclass
class Tally:
    """Latencies (seconds) of answered requests and a count per outcome."""

    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def row(self) -> dict[str, Any]:
        """p50/p95/p99 in ms and the outcome counts."""
        ms = sorted(x * 1000 for x in self.latencies)

        def pct(p: float) -> float | None:
            return round(ms[min(len(ms) - 1, int(p * len(ms)))], 1) if ms else None

        return {"n": len(ms), "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99),
                **dict(self.outcomes)}  # fmt: skip


def _head(path: str, key: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            "Connection: keep-alive\r\n\r\n").encode()  # fmt: skip


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers; the body (Content-Length) is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    return status, headers


def _classify(status: int, headers: dict[str, str]) -> str:
    if status == 503:
        return "503" if "retry-after" in headers else "503_no_retry_after"
    return str(status)


async def poll_client(
    addr: tuple[str, int],
    path: str,
    key: str,
    interval: float,
    until: float,
    tally: Tally,
    honour_retry_after: bool = False,
) -> None:
    """One polling client on one connection: a request every `interval` seconds (0: the next as
    soon as one is answered, a 503 included, unless `honour_retry_after`: then it waits the
    503's Retry-After first)."""
    await asyncio.sleep(random.uniform(0, interval))
    reader, writer = await asyncio.open_connection(*addr)
    try:
        while time.monotonic() < until:
            began = time.monotonic()
            try:
                writer.write(_head(path, key))
                status, headers = await asyncio.wait_for(_read_response(reader), TIMEOUT)
            except TimeoutError:
                tally.outcomes["timeout"] += 1
                return
            except (OSError, asyncio.IncompleteReadError):
                tally.outcomes["connection_error"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(*addr)
                continue
            tally.latencies.append(time.monotonic() - began)
            tally.outcomes[_classify(status, headers)] += 1
            if headers.get("connection") == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(*addr)
            if honour_retry_after and status == 503 and "retry-after" in headers:
                await asyncio.sleep(float(headers["retry-after"]))
                continue
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
    finally:
        writer.close()


async def sse_client(
    addr: tuple[str, int], path: str, key: str, hold: float, until: float, tally: Tally
) -> None:
    """Open a stream, time its first event, hold it, close, repeat."""
    await asyncio.sleep(random.uniform(0, hold))
    while time.monotonic() < until:
        began = time.monotonic()
        reader, writer = await asyncio.open_connection(*addr)
        try:
            writer.write(_head(path, key))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            status = int(head.split()[1])
            if status != 200:
                tally.latencies.append(time.monotonic() - began)
                tally.outcomes["503" if status == 503 else str(status)] += 1
                await asyncio.sleep(1.0)
                continue
            await asyncio.wait_for(reader.readuntil(b"data: "), TIMEOUT)
            tally.latencies.append(time.monotonic() - began)
            tally.outcomes["200"] += 1
            with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                await asyncio.wait_for(reader.read(-1), hold)
        except TimeoutError:
            tally.outcomes["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError):
            tally.outcomes["connection_error"] += 1
        finally:
            writer.close()


async def run_phase(
    scenario: str, clients: int, keys: list[str], job_id: str, args: argparse.Namespace
) -> Tally:
    """`clients` clients of one scenario for `args.seconds`."""
    tally = Tally()
    until = time.monotonic() + args.seconds
    addr = ("127.0.0.1", args.port)
    base = f"/v1/fine_tuning/jobs/{job_id}"
    tasks = []
    for i in range(clients):
        key = keys[i // CLIENTS_PER_KEY]
        if scenario == "sse":
            coro = sse_client(addr, f"{base}/events?stream=true", key, args.hold, until, tally)
        elif scenario in OVERLOAD:  # closed loop: the next poll as soon as one is answered
            polite = scenario == "polite"
            coro = poll_client(addr, base, key, 0.0, until, tally, honour_retry_after=polite)
        else:
            path = base if scenario == "poll" else f"{base}/events?limit=20"
            coro = poll_client(addr, path, key, args.interval, until, tally)
        tasks.append(asyncio.create_task(coro))
    await asyncio.wait(tasks, timeout=args.seconds + TIMEOUT + args.hold + 5)
    for task in tasks:
        task.cancel()
    return tally
