"""The option spec (our extension): every job option with its type, range, default and help."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentProject
from api.schemas import ListObject
from quaff_core.options.spec import OPTIONS

router = APIRouter(prefix="/v1/fine_tuning", tags=["fine-tuning"])


class OptionObject(BaseModel):
    """One option as `Option.wire()` describes it."""

    name: str
    group: str | None
    field: str | None
    param: str | None
    type: Literal["integer", "number", "boolean", "string", "string_list"]
    default: Any
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool
    exclusive_maximum: bool
    choices: list[Any] | None
    nullable: bool
    auto: bool
    help: str


class OptionList(ListObject[OptionObject]):
    """Every option a job accepts."""


@router.get("/options", response_model=OptionList)
async def list_options(project: CurrentProject) -> OptionList:
    """What a job accepts, derived from the one option spec (the dashboard builds its form)."""
    data = [OptionObject(**opt.wire()) for opt in OPTIONS if opt.api is not None]
    return OptionList(data=data, has_more=False)
