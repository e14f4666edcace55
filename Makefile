# Two commands do everything on a fresh machine: `make demo` (the lifecycle demo) and `make test` (all tests).
# Both create .venv with uv and install the pinned stack first if needed.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-unit test-integration lint up down status bench-orchestration bench-serving bench-drift lock clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	@$(PY) -m lifecycle.demo

test: venv
	@$(PY) -m ruff check .
	@$(PY) -m pytest

test-unit: venv
	@$(PY) -m pytest tests/unit tests/dags

test-integration: venv
	@$(PY) -m pytest tests/integration

lint: venv
	@$(PY) -m ruff check .

up: venv
	@$(PY) -m lifecycle.cli up

down:
	@if [ -x $(PY) ]; then $(PY) -m lifecycle.cli down; fi

status: venv
	@$(PY) -m lifecycle.cli status

bench-orchestration: venv
	@$(PY) bench/orchestration.py

lock: venv
	@bash scripts/lock.sh

clean: down
	rm -rf .lifecycle

bench-drift: venv
	@$(PY) bench/drift.py

bench-serving: venv
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@$(PY) bench/serving.py
