# Two commands do everything on a fresh machine: `make demo` (the lifecycle demo) and `make test` (all tests).
# Both create .venv with uv and install the pinned stack first if needed.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-distributed test-unit test-integration lint up down status bench-orchestration bench-serving bench-drift bench-decisions bench-registry bench-airflow-db lock clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	@$(PY) -m lifecycle.ops.demo

# Everything CI runs (.ci/run): ruff; every test whose verdict does not run on the wall clock (unit, DAG and
# the clock-free integration tests) on two xdist workers, a module per worker; then the `clock` tests (a real
# scheduler, live traffic, canary windows, backfills: pyproject's markers) one at a time with nothing beside
# them; then the distributed topology's suite.
test: venv
	@$(PY) -m ruff check .
	@$(PY) -m pytest -n 2 --dist loadscope -m "not clock" tests/unit tests/dags tests/integration
	@$(PY) -m pytest -m clock tests/integration
	@$(MAKE) --no-print-directory test-distributed

# The distributed topology (PostgreSQL, Redis, CeleryExecutor with default + gpu workers, MLflow server over
# PostgreSQL with S3 artifacts): installs Debian's postgresql and redis-server if missing, starts everything on
# loopback, runs the lifecycle and the fault tests on it, stops what it started.
test-distributed: venv
	@LIFECYCLE_TOPOLOGY=distributed $(PY) -m pytest tests/distributed

test-unit: venv
	@$(PY) -m pytest -n 2 --dist loadscope tests/unit tests/dags

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
	@if [ -x $(PY) ]; then $(PY) -c 'from lifecycle import paths; from lifecycle.ops import pgembedded, topology; p = paths.StatePaths.current(); topology.remove_cluster(p); pgembedded.AirflowPostgres(p).remove()'; fi
	rm -rf .lifecycle

bench-drift: venv
	@$(PY) bench/drift.py

# The deploy judge under simulated traffic: shadow + anytime-valid test vs the old per-step judge (BENCH_REPS).
bench-decisions: venv
	@$(PY) bench/decisions.py

bench-registry: venv
	@$(PY) bench/registry.py

bench-airflow-db: venv
	@$(PY) bench/airflow_db.py

bench-serving: venv
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@$(PY) bench/serving.py
