"""The HTTP side of `quaff jobs`: a client for the server, JSON-or-CliError, upload, unpacking."""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx

from cli.common import CliError
from cli.local import find_base_url, find_key


def client(args: argparse.Namespace, timeout: float | None = 60.0) -> httpx.Client:
    """An HTTP client for the server in `args`."""
    key = args.api_key if args.api_key is not None else find_key()
    if not key:
        raise CliError(
            "no API key: pass --api-key, set QUAFF_API_KEY (or OPENAI_API_KEY), or run "
            "`quaff serve --ensure-key` here"
        )
    base_url = args.base_url or find_base_url()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def extract_tarball(content: bytes, output: Path) -> list[str]:
    """Unpack a downloaded .tar.gz into `output` (created; data-only filter); its member names."""
    output.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        tar.extractall(output, filter="data")
        return tar.getnames()


def checked(response: httpx.Response) -> Any:
    """The JSON body, or CliError with the server's error message."""
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        detail = f"{error['message']}" + (f" (param: {error['param']})" if error["param"] else "")
    except (ValueError, KeyError, TypeError):
        detail = response.text[:500]
    raise CliError(f"HTTP {response.status_code}: {detail}")


def upload(http: httpx.Client, path: Path) -> str:
    """Upload a JSONL file; CliError unless it was processed."""
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    with path.open("rb") as handle:
        body = checked(
            http.post("/files", files={"file": (path.name, handle)}, data={"purpose": "fine-tune"})
        )
    if body["status"] != "processed":
        raise CliError(f"{path} was rejected: {body.get('status_details')}")
    print(f"uploaded {path} as {body['id']}", file=sys.stderr)
    return str(body["id"])
