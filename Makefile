# modelgate — developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_COMPILE_BYTECODE := 1
export AIRFLOW__CORE__LOAD_EXAMPLES := False
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen --no-sync

.PHONY: help uv install demo test check lint typecheck pytest bench airflow clean

help:
	@echo "make demo   - run the main job end to end on the embedded default registry"
	@echo "make test   - ruff + mypy + pytest (needs PostgreSQL on 127.0.0.1:5432)"
	@echo "make check  - the fast tier: ruff + mypy + pytest without Airflow, the running stack or slow tests"
	@echo "make lint   - ruff check and format check"
	@echo "make bench  - benchmarks, printing ratios against a baseline measured in the same run"
	@echo "make airflow - a running Airflow on PostgreSQL with modelgate's DAGs (UI on :8080)"

uv:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

install: uv
	$(UV) sync --frozen --compile-bytecode

demo: install
	$(RUN) python -m modelgate.demo

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy

pytest: install
	$(RUN) pytest

test: lint typecheck pytest

# The inner loop: no dag.test(), no running Airflow, nothing marked slow (make test runs them all).
check: lint typecheck
	$(RUN) pytest -m "not airflow and not system and not slow" -q

bench: install
	$(RUN) python -m benchmarks

# Airflow on PostgreSQL (the embedded server unless AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is set), registry migrated,
# the churn example seeded up to now; AIRFLOW_ARGS="--executor celery" for CeleryExecutor on local Redis.
airflow: install
	$(RUN) modelgate airflow $(AIRFLOW_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache bench-results
