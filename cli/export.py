"""`quaff export JOB -o DIR`: the adapter merged into its base, as a transformers directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from cli.common import CliError
from cli.http import checked, client, extract_tarball

POLL_LIMIT_SECONDS = 3600.0


def register(subparsers: Any) -> None:
    """Add the `export` subcommand."""
    parser = subparsers.add_parser(
        "export", help="download a job's adapter merged into its base (transformers directory)"
    )
    parser.add_argument("job_id")
    parser.add_argument("-o", "--output", required=True, type=Path, help="target directory")
    parser.add_argument("--step", type=int, help="a checkpoint's step instead of the final")
    parser.add_argument("--base-url", default=None, help="server API root (as `quaff jobs`)")
    parser.add_argument("--api-key", default=None, help="API key (as `quaff jobs`)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Ask for the merged export, wait while the server builds it, unpack it."""
    params: dict[str, Any] = {"format": "merged"}
    if args.step is not None:
        params["step"] = args.step
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    with client(args, timeout=None) as http:
        while True:
            response = http.get(f"/fine_tuning/jobs/{args.job_id}/adapter", params=params)
            if response.status_code != 202:
                break
            status = response.json()
            print(f"export {status.get('id')}: {status.get('status')}", file=sys.stderr)
            if time.monotonic() > deadline:
                raise CliError("the export is still building; run `quaff export` again later")
            time.sleep(float(response.headers.get("retry-after", "2")))
        if not response.is_success:
            checked(response)
    names = extract_tarball(response.content, args.output)
    print(f"{len(names)} files in {args.output} (load with AutoModelForCausalLM.from_pretrained)")
    return 0
