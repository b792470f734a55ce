# Every target builds the virtual environment it needs from requirements.lock first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
LOCK := requirements.lock

.PHONY: venv demo test lint typecheck unit bench schemas lock clean

venv: $(VENV)/.installed

# Bytecode is compiled once at install: with PYTHONDONTWRITEBYTECODE set (as on our CI machine)
# Python never caches it, and every process (the CLI, a notebook kernel, a served worker, each
# test subprocess) would compile TensorFlow, Keras, MLflow and Prefect from source again:
# `import keras` takes 22 s that way, 8 s compiled.

$(VENV)/.installed: $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "$(PYTHON) is Python %d.%d; requirements.lock is for 3.11: make PYTHON=python3.11" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

## The main job on the embedded default (SQLite + local files under ./.aifx): a replay of the
## whole loop over three months of a synthetic market, then its report.
demo: venv
	$(BIN)/aifx replay --synthetic

## Lint, format check, type check, then the whole test suite in parallel: one worker per core
## plus one, since tests also wait (on Prefect, servers, subprocesses); on 2 cores 3 workers took
## 578 s where 2 took 636 s. At most 8 workers (each takes a Redis database of its own, counting
## down from AIFX_TEST_REDIS_URL's); TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print((os.cpu_count() or 1) + 1)')
test: lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --maxprocesses 8

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: venv
	$(BIN)/mypy

## The fast part (under two minutes): lint, import contracts, types, and every test that needs
## no database, Redis, MLflow store or Prefect API (`-m "not integration"`).
check: lint typecheck
	$(BIN)/pytest -m "not integration" -q

## Unit tests only (no database).
unit: venv
	$(BIN)/pytest tests/code -m "not integration"

bench: venv
	$(BIN)/python benchmarks/bench_labeling_windows.py
	$(BIN)/python benchmarks/bench_relay.py
	$(BIN)/python benchmarks/bench_training_overhead.py
	$(BIN)/python benchmarks/bench_abtest_power.py
	$(BIN)/python benchmarks/bench_shadow_power.py
	$(BIN)/python benchmarks/bench_refresh.py
	$(BIN)/python benchmarks/bench_thresholds.py
	$(BIN)/python benchmarks/bench_signal_commit.py
	$(BIN)/python benchmarks/bench_http_stack.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_study.py
	$(BIN)/python benchmarks/bench_monthly.py
	$(BIN)/python benchmarks/bench_replay.py
	$(BIN)/python benchmarks/bench_no_pattern.py

## Regenerate the event payloads' JSON Schemas in README.md from aifx_ml/events/schemas.py.
schemas: venv
	$(BIN)/python -m aifx_ml.events.schemas --write README.md

## Re-resolve the pins after changing dependencies in pyproject.toml.
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
