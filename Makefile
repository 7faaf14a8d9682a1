# dropbatch: `make demo` runs the main job on the local stack; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test test-unit demo up down status bench bench-validate bench-coldstart lint-infra clean

help: ## list every target
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements.txt functions/requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -e .
	@touch $@

install: $(STAMP) ## create .venv and install the project and its test dependencies

test: $(STAMP) ## run the whole test suite (unit, integration, e2e on the local stack, infra checks)
	$(PY) -m pytest tests

test-unit: $(STAMP) ## only the fast unit tests
	$(PY) -m pytest tests/unit

bench: bench-validate bench-coldstart ## run every benchmark

bench-validate: $(STAMP) ## validation speed and memory against the json_format baseline
	$(PY) tests/bench/bench_validate.py

bench-coldstart: $(STAMP) ## import cost of functions/main.py against vertexai.batch_prediction
	$(PY) tests/bench/bench_coldstart.py

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis
