# relaychat — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH, else a private copy installed with pip into .tools/.
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never

.DEFAULT_GOAL := help
.PHONY: help env serve fake-llm test lint format bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-9s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

# --compile-bytecode: Python reads these .pyc files even under PYTHONDONTWRITEBYTECODE, where
# every process (the test run, each server it starts) would otherwise compile all it imports.
env: $(UV) ## Create .venv from the committed lock file
	@$(UV) sync --frozen --quiet --compile-bytecode

serve: env ## Migrate the database and serve on HOST:PORT (default 127.0.0.1:3080)
	$(UV) run --frozen relaychat serve

fake-llm: env ## Serve the fake LLM upstream for trials on FAKE_LLM_PORT (default 9100)
	$(UV) run --frozen relaychat dev fake-llm --port $(or $(FAKE_LLM_PORT),9100)

test: env ## Run the whole test suite (browser tests too when a Chromium is found)
	@command -v chromium >/dev/null || [ -n "$$CHROMIUM_PATH" ] || \
		echo "make test: no Chromium found (apt-get install chromium, or set CHROMIUM_PATH): the browser tests in tests/browser are SKIPPED"
	$(UV) run --frozen pytest -n $(or $(PYTEST_WORKERS),auto) --maxprocesses 4 $(PYTEST_ARGS)

lint: env ## ruff (lint and format check) and mypy strict
	$(UV) run --frozen ruff check src tests bench
	$(UV) run --frozen ruff format --check src tests bench
	$(UV) run --frozen mypy

format: env ## Apply ruff fixes and formatting
	$(UV) run --frozen ruff check --fix src tests bench
	$(UV) run --frozen ruff format src tests bench

bench: env ## Run the benchmarks, each against a baseline of the same run (BENCH_ARGS=--quick: ~3 min)
	$(UV) run --frozen python -m bench.run_all $(BENCH_ARGS)

clean: ## Remove the environment and caches (keeps ./data)
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
