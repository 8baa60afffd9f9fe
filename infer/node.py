"""`quaff infer`: serve the internal API, register in the node table and beat until stopped."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import torch
import uvicorn

from infer.cache import MB, ModelCache
from infer.scheduler import Scheduler
from infer.server import create_infer_app
from infer.tasks import task_factory
from store import infer_nodes
from store.blobs import BlobStore
from store.db import session_scope
from store.device_lock import DeviceTurnstile, lock_dir, lock_name
from store.settings import Settings

logger = logging.getLogger(__name__)


def resolve_device(setting: str) -> str:
    """`cpu`, `cuda` or `cuda:N` for torch; ValueError when a GPU is asked for but not seen."""
    if setting == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda" if setting == "auto" else setting
    if setting != "auto":
        raise ValueError(f"QUAFF_INFER_DEVICE={setting} but no CUDA device is visible")
    return "cpu"


def _bind(settings: Settings) -> tuple[socket.socket, str]:
    """A listening socket on infer_host:infer_port (0: any free port) and the URL to announce."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.infer_host, settings.infer_port))
    port = sock.getsockname()[1]
    host = settings.infer_host
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return sock, settings.infer_url or f"http://{host}:{port}"


class Beat(threading.Thread):
    """Registers the node, refreshes its heartbeat and load, and removes it at the end."""

    def __init__(self, settings: Settings, scheduler: Scheduler, url: str, device: str) -> None:
        super().__init__(name="quaff-infer-heartbeat", daemon=True)
        self.settings, self.scheduler, self.url, self.device = settings, scheduler, url, device
        self.stopped = threading.Event()
        self.token = infer_nodes.new_token()
        self.node_id = self._register()

    def _register(self) -> str:
        with session_scope(self.settings) as session:
            node = infer_nodes.register_node(
                session,
                url=self.url,
                token=self.token,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                device=self.device,
                queue_size=self.settings.infer_queue_size,
            )
            logger.info("inference node %s at %s on %s", node.id, self.url, self.device)
            return node.id

    def run(self) -> None:
        while not self.stopped.wait(self.settings.infer_heartbeat_seconds):
            try:
                with session_scope(self.settings) as session:
                    alive = infer_nodes.beat(
                        session,
                        self.node_id,
                        queue_depth=self.scheduler.depth(),
                        loaded=self.scheduler.cache.loaded_keys(),
                    )
                if not alive:
                    logger.warning("node row %s was removed; registering again", self.node_id)
                    self.node_id = self._register()
            except Exception:  # the database may be briefly away; keep beating
                logger.exception("heartbeat failed")

    def stop(self) -> None:
        self.stopped.set()
        with session_scope(self.settings) as session:
            infer_nodes.remove_node(session, self.node_id)


def run_node(settings: Settings) -> None:
    """Run one inference node in this process until SIGINT/SIGTERM."""
    device = resolve_device(settings.resolved_infer_device)
    turnstile = None
    if settings.infer_yield_to_training:
        name = lock_name(settings.resolved_infer_device, torch.cuda.is_available())
        turnstile = DeviceTurnstile(lock_dir(settings.data_dir), name)
    dtype = torch.bfloat16 if settings.infer_dtype == "bfloat16" else None
    cache = ModelCache(
        BlobStore(settings.blob_dir),
        Path(settings.data_dir) / "cache" / "infer",
        budget_bytes=settings.infer_memory_budget_mb * MB,
        device=device,
        dtype=dtype,
        adapters=settings.infer_adapters,
    )
    scheduler = Scheduler(
        cache,
        queue_size=settings.infer_queue_size,
        max_batch=settings.infer_max_batch,
        turnstile=turnstile,
    )
    sock, url = _bind(settings)
    beat = Beat(settings, scheduler, url, device)
    app = create_infer_app(
        scheduler,
        beat.token,
        task_factory(settings, lambda: beat.node_id),
        retry_after=settings.infer_retry_after_seconds,
    )
    scheduler.start()
    beat.start()
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        beat.stop()
        scheduler.stop()
