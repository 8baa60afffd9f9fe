"""`quaff jobs eval ID --file F`: score a job's model against its base (or a checkpoint)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from cli.common import CliError
from cli.http import checked, client, upload

POLL_SECONDS = 1.0
WAIT_LIMIT_SECONDS = 3600.0
COLUMNS = ("model", "loss", "mean_token_accuracy", "exact_match", "n_examples")


def register_eval(sub: Any) -> None:
    """Add `quaff jobs eval` to the `jobs` action parsers."""
    parser = sub.add_parser("eval", help="compare the tuned model with the base on a file")
    parser.add_argument("job_id")
    parser.add_argument("--file", required=True, type=Path, help="validation JSONL file")
    parser.add_argument("--model", help="model to score (default: the job's fine-tuned model)")
    parser.add_argument(
        "--compare-to", default="base", help="'base' (default) or a checkpoint model name"
    )
    parser.set_defaults(handler=run_eval)


def table(results: list[dict[str, Any]]) -> str:
    """The results as an aligned text table, one row per model."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "-" if value is None else str(value)

    rows = [list(COLUMNS)] + [[cell(r.get(c)) for c in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows
    )


def run_eval(args: argparse.Namespace) -> int:
    """Upload the file, start the evaluation, wait for it, print the table."""
    with client(args) as http:
        file_id = upload(http, args.file)
        body: dict[str, Any] = {"file": file_id, "compare_to": args.compare_to}
        if args.model:
            body["model"] = args.model
        evaluation = checked(http.post(f"/fine_tuning/jobs/{args.job_id}/evaluations", json=body))
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while evaluation["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise CliError(f"evaluation {evaluation['id']} is still {evaluation['status']}")
            time.sleep(POLL_SECONDS)
            listed = checked(http.get(f"/fine_tuning/jobs/{args.job_id}/evaluations"))
            evaluation = next(e for e in listed["data"] if e["id"] == evaluation["id"])
    if evaluation["status"] != "succeeded":
        raise CliError(f"evaluation {evaluation['id']} failed: {evaluation['error']['message']}")
    print(f"evaluation {evaluation['id']} on {file_id}", file=sys.stderr)
    print(table(evaluation["results"]))
    return 0
