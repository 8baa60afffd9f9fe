"""Outlier maps: calibration results stored as JSON blobs, reused by model + data + options."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.blobs import BlobStore, commit_with_blob, delete_with_blob
from store.ids import new_id, now_s
from store.models import OutlierMap
from store.owned import get_owned
from store.pages import FIRST_PAGE, Cursor, Page, page


def options_hash(options: Mapping[str, Any]) -> str:
    """A stable hash of the calibration options (canonical JSON)."""
    canonical = json.dumps(dict(options), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def find_reusable(
    session: Session,
    project_id: str,
    *,
    base_model: str,
    dataset_sha256: str,
    options: Mapping[str, Any],
) -> OutlierMap | None:
    """Worker: the newest map for this base model, training data checksum and options."""
    return session.scalar(
        select(OutlierMap)
        .where(
            OutlierMap.project_id == project_id,
            OutlierMap.base_model == base_model,
            OutlierMap.dataset_sha256 == dataset_sha256,
            OutlierMap.options_hash == options_hash(options),
        )
        .order_by(OutlierMap.id.desc())
        .limit(1)
    )


def create_outlier_map(
    session: Session,
    blobs: BlobStore,
    project_id: str,
    *,
    base_model: str,
    dataset_sha256: str,
    options: Mapping[str, Any],
    payload: Mapping[str, Any],
    dataset_file_id: str | None = None,
) -> OutlierMap:
    """Worker: store `payload` (JSON with `layers: {name: [channel, ...]}`) then commit the row."""
    layers = payload.get("layers")
    if not isinstance(layers, Mapping):
        raise ValueError("outlier map payload needs 'layers': {layer name: [channel indices]}")
    map_id = new_id("om")
    key = f"outlier_maps/{map_id}.json"
    info = blobs.write_bytes(key, json.dumps(dict(payload), sort_keys=True).encode("utf-8"))
    threshold = options.get("outlier_threshold", options.get("threshold"))
    row = OutlierMap(
        id=map_id,
        project_id=project_id,
        base_model=base_model,
        dataset_file_id=dataset_file_id,
        dataset_sha256=dataset_sha256,
        strategy=str(options.get("outlier_strategy", options.get("strategy", "unknown"))),
        threshold=None if threshold is None else float(threshold),
        options=dict(options),
        options_hash=options_hash(options),
        n_layers=len(layers),
        n_outlier_channels=sum(len(channels) for channels in layers.values()),
        blob_key=key,
        sha256=info.sha256,
        bytes=info.bytes,
        created_at=now_s(),
    )
    session.add(row)
    commit_with_blob(session, blobs, key)
    return row


def load_payload(blobs: BlobStore, row: OutlierMap) -> dict[str, Any]:
    """The stored JSON payload of a map."""
    data: dict[str, Any] = json.loads(blobs.read_bytes(row.blob_key))
    return data


def get_outlier_map(session: Session, project_id: str, map_id: str) -> OutlierMap:
    """The project's map; NotFoundError otherwise."""
    return get_owned(session, OutlierMap, map_id, project_id)


def list_outlier_maps(
    session: Session, project_id: str, cursor: Cursor = FIRST_PAGE
) -> Page[OutlierMap]:
    """A page of the project's maps newest first."""
    query = select(OutlierMap).where(OutlierMap.project_id == project_id)
    return page(session, query, OutlierMap.id, cursor)


def delete_outlier_map(session: Session, blobs: BlobStore, row: OutlierMap) -> None:
    """Delete the map (jobs keep running; their `outlier_map_id` becomes null), then its blob."""
    delete_with_blob(session, blobs, row)
