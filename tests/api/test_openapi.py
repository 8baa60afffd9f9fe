"""The OpenAPI document is typed (job body from the option spec, lists, the upload form, a bearer
scheme, errors as the envelope and never 422) and /docs, /redoc work offline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from quaff_core.options.spec import OPTIONS


@pytest.fixture
def schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, ops in schema["paths"].items() for m, op in ops.items()]


def test_no_operation_documents_a_422_and_errors_use_the_envelope(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, _method, op in _operations(schema):
        assert "422" not in op["responses"], path
        for status in ("400", "503"):
            ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorResponse"
    envelope = schema["components"]["schemas"]["ErrorBody"]
    assert set(envelope["required"]) == {"message", "type", "param", "code"}


def test_v1_operations_use_the_bearer_scheme(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for path, _method, op in _operations(schema):
        if path.startswith("/v1"):
            assert op["security"] == [{"ApiKey": []}], path


def test_job_create_body_is_derived_from_the_option_spec(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    body = schema["paths"]["/v1/fine_tuning/jobs"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobCreate"
    }
    job = components["JobCreate"]
    assert set(job["required"]) == {"model", "training_file"}
    assert job["additionalProperties"] is False
    titles = {"hyperparameters": "Hyperparameters", "lora": "LoraOptions", "peft": "PeftOptions",
              "quantization": "QuantizationOptions", "training": "TrainingOptions",
              "method": "Method"}  # fmt: skip
    for opt in OPTIONS:
        if opt.group is None:
            continue
        prop = components[titles[opt.group]]["properties"][opt.field]
        assert prop["description"] == opt.help
        assert prop.get("default") == opt.wire()["default"]
        value = prop["anyOf"][0] if "anyOf" in prop and opt.kind != "modules" else prop
        if opt.kind in ("int", "float") and opt.low is not None:
            key = "exclusiveMinimum" if opt.low_open else "minimum"
            assert value[key] == opt.low, opt.name
        if opt.kind == "choice":
            assert value["enum"] == list(opt.choices)


def test_lists_and_the_upload_form_are_typed(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    listed = schema["paths"]["/v1/files"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"]["$ref"] == "#/components/schemas/FileList"
    assert components["FileList"]["properties"]["data"]["items"] == {
        "$ref": "#/components/schemas/FileObject"
    }
    for name in ("JobList", "EventList", "CheckpointList", "ModelList", "OutlierMapList"):
        assert components[name]["properties"]["data"]["items"]["$ref"].startswith(
            "#/components/schemas/"
        )
    form = schema["paths"]["/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]
    properties = form["schema"]["properties"]
    assert properties["file"] == {
        "type": "string",
        "format": "binary",
        "description": "The JSONL training file (one example a line).",
    }
    assert properties["purpose"]["const"] == "fine-tune"
    assert properties["expires_after[seconds]"]["minimum"] == 3600
    assert set(form["schema"]["required"]) == {"file", "purpose"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_their_assets_from_this_server(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(
        r"url: '([^']+)'", html.text
    )
    assert urls
    assert not [u for u in urls if u.startswith(("http:", "https:", "//"))]
    assert "cdn." not in html.text
    for url in urls:
        if url.startswith("/docs-assets/"):
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100
