"""The registry of `quaff infer` processes: each registers, beats, and says what it holds.

The API reads it to pick a node for a request: live nodes only (a heartbeat newer than
`infer_lease_seconds`), those that already hold the model first, then the least busy.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.ids import new_id, now_s
from store.models import InferNode


def new_token() -> str:
    """A node's bearer token (the API sends it on every forwarded request)."""
    return secrets.token_hex(24)


def register_node(
    session: Session,
    *,
    url: str,
    token: str,
    hostname: str,
    pid: int,
    device: str,
    queue_size: int,
) -> InferNode:
    """Add a node; its heartbeat starts now."""
    node = InferNode(
        id=new_id("infer"),
        url=url.rstrip("/"),
        token=token,
        hostname=hostname,
        pid=pid,
        device=device,
        queue_depth=0,
        queue_size=queue_size,
        loaded=[],
        started_at=now_s(),
        heartbeat_at=time.time(),
    )
    session.add(node)
    session.commit()
    return node


def beat(session: Session, node_id: str, *, queue_depth: int, loaded: Sequence[str]) -> bool:
    """Refresh a node's heartbeat and load; False when its row is gone (re-register)."""
    node = session.get(InferNode, node_id)
    if node is None:
        return False
    node.heartbeat_at = time.time()
    node.queue_depth = queue_depth
    node.loaded = list(loaded)
    session.commit()
    return True


def remove_node(session: Session, node_id: str) -> None:
    """Forget a node (it is stopping)."""
    session.execute(delete(InferNode).where(InferNode.id == node_id))
    session.commit()


def live_nodes(session: Session, lease_seconds: float) -> list[InferNode]:
    """Nodes whose heartbeat is newer than the lease."""
    fresh = time.time() - lease_seconds
    return list(session.scalars(select(InferNode).where(InferNode.heartbeat_at >= fresh)))


def is_live(session: Session, node_id: str | None, lease_seconds: float) -> bool:
    """Whether the node `node_id` is registered and beating."""
    node = session.get(InferNode, node_id) if node_id else None
    return node is not None and node.heartbeat_at >= time.time() - lease_seconds


def rank_nodes(nodes: Sequence[InferNode], keys: Sequence[str]) -> list[InferNode]:
    """Nodes to try in order: most of `keys` already loaded, then the shortest queue."""

    def order(node: InferNode) -> tuple[int, float, str]:
        held = sum(1 for key in keys if key in (node.loaded or []))
        return (-held, node.queue_depth / max(node.queue_size, 1), node.id)

    return sorted(nodes, key=order)
