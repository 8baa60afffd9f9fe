"""A short run of the load benchmark: real API and worker processes, every scenario, no timeout
and no 5xx but 503s that carry Retry-After."""

from __future__ import annotations

import pytest

from bench.load import parse_args, run

pytestmark = pytest.mark.slow


def test_a_short_load_run_answers_every_request() -> None:
    args = parse_args(["--clients", "30", "--seconds", "3", "--hold", "1", "--examples", "40"])
    found = run(args)
    assert [r["scenario"] for r in found["results"]] == ["poll", "events", "sse"]
    for row in found["results"]:
        assert row["n"] > 0, row
        assert row.get("timeout", 0) == 0, row
        assert row.get("connection_error", 0) == 0, row
        assert set(row) <= {
            "scenario", "clients", "n", "p50", "p95", "p99", "200", "503",
            "ok_per_s", "cpu_ms_per_request", "cpu_ms_per_ok",
        }, row  # fmt: skip
        assert row["cpu_ms_per_request"] > 0, row
        assert row["200"] > 0, row
    assert found["trained_steps"] > 0  # the worker trained while the clients were served
