# The two commands a new user needs: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
K210 := $(VENV)/bin/k210
OUT ?= out

.PHONY: setup demo test test-fast bench lint clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	@$(PY) -m k210.host.demo --out $(OUT)/demo

test: setup
	@$(PY) -m pytest -q --durations=20 $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	@$(PY) -m benchmarks.run_all --out $(OUT)/bench

lint: setup
	@$(VENV)/bin/ruff check .

clean:
	rm -rf $(OUT) build *.egg-info .pytest_cache .ruff_cache
