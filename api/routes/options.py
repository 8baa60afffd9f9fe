"""The option spec (our extension): every job option with its type, range, default and help."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentProject
from quaff_core.options import OPTIONS

router = APIRouter(prefix="/v1/fine_tuning", tags=["fine-tuning"])


@router.get("/options")
def list_options(project: CurrentProject) -> dict[str, Any]:
    """What a job accepts, derived from the one option spec (the dashboard builds its form)."""
    data = [opt.wire() for opt in OPTIONS if opt.api is not None]
    return {"object": "list", "data": data, "has_more": False}
