"""The upload form as OpenAPI shows it (the route parses the stream itself, so FastAPI cannot
see the fields): `file`, `purpose` and OpenAI's `expires_after` as the SDK sends it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from store.files import EXPIRY_SECONDS, UPLOAD_PURPOSES


class FileUploadForm(BaseModel):
    """`multipart/form-data` of `POST /v1/files`."""

    model_config = ConfigDict(title="FileUpload", populate_by_name=True)

    file: bytes = Field(description="The JSONL training file (one example a line).")
    purpose: Literal[UPLOAD_PURPOSES] = Field(description="Only 'fine-tune'.")  # type: ignore[valid-type]
    expires_after_anchor: Literal["created_at"] | None = Field(
        default=None,
        alias="expires_after[anchor]",
        description="OpenAI's expiry anchor (with `expires_after[seconds]`).",
    )
    expires_after_seconds: int | None = Field(
        default=None,
        alias="expires_after[seconds]",
        ge=EXPIRY_SECONDS[0],
        le=EXPIRY_SECONDS[1],
        description="Seconds after creation when the file expires and is purged.",
    )


def _schema() -> dict[str, Any]:
    """The form's JSON schema: `file` as binary; optional fields without a null branch (a form
    field is left out, never null)."""
    schema = FileUploadForm.model_json_schema(by_alias=True)
    properties = schema["properties"]
    properties["file"] = {"type": "string", "format": "binary", **_described(properties["file"])}
    for name, prop in properties.items():
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if branches:
            prop.update(branches[0])
            prop.pop("default", None)
        properties[name] = prop
    return schema


def _described(prop: dict[str, Any]) -> dict[str, Any]:
    return {"description": prop["description"]} if "description" in prop else {}


UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": _schema()}},
    }
}
