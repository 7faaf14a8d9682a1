# dropbatch: `make demo` runs the main job on the local stack; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV := .venv-checkov/bin/checkov
CHECKOV_VERSION := 3.3.30
SOAK_FILES ?= 20
# pytest-xdist workers: the suite mostly waits on the stack (each worker starts its own), so more
# workers than the machine's 2 cores still shorten it
TEST_WORKERS ?= 4

.DEFAULT_GOAL := help
.PHONY: help install lint docs format test test-unit test-infra demo up down status bench bench-validate bench-coldstart bench-split bench-split-memory bench-stage bench-submit bench-e2e bench-soak bench-slots bench-iam bench-retry bench-reuse clean

help: ## list every target
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# Installs go through uv (the same pins, resolved the same; a fresh venv in 48 s here against 110 s
# with pip), with system certificates; pip does it if uv cannot.
UV_VERSION := 0.13.10
export UV_NATIVE_TLS := 1
define install_into
	$(1)/bin/python -m pip install -q uv==$(UV_VERSION) && \
	$(1)/bin/uv pip install -q --python $(1)/bin/python --compile-bytecode $(2) || \
	$(1)/bin/python -m pip install -q $(2)
endef

$(STAMP): requirements.txt functions/requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call install_into,$(VENV),-r requirements.txt -e .)
	@touch $@

install: $(STAMP) ## create .venv and install the project and its test dependencies

# checkov lives in a venv of its own so its many pins cannot disturb the project's.
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	$(call install_into,.venv-checkov,checkov==$(CHECKOV_VERSION))

# The two venvs are built side by side (each is mostly waiting on pip), then the gates, then pytest.
test: ## run the whole test suite (gates, layers, unit, integration, e2e on the local stack, infra checks)
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(CHECKOV)
	@$(MAKE) --no-print-directory lint docs
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist load

lint: $(STAMP) ## the gates: ruff's format check, its lint rules and complexity ceiling (pyproject.toml)
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/ruff check --quiet .

docs: $(STAMP) ## build docs/ as a site with mkdocs-material (.cache/site); --strict: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

format: $(STAMP) ## format the tree as `make lint` wants it
	$(VENV)/bin/ruff format --quiet .
	$(VENV)/bin/ruff check --quiet --fix .

test-infra: $(STAMP) $(CHECKOV) ## only the offline infra checks (fmt, checkov, IAM rules, provider schema)
	$(PY) -m pytest tests/infra

test-unit: $(STAMP) ## only the fast unit tests
	$(PY) -m pytest tests/unit

bench: bench-validate bench-coldstart bench-split bench-split-memory bench-stage bench-submit bench-e2e bench-soak bench-slots bench-iam bench-retry bench-reuse ## every benchmark (docs/benchmarks.md)

bench-validate: $(STAMP) ## validation speed and memory against the json_format baseline
	$(PY) tests/bench/bench_validate.py

bench-coldstart: $(STAMP) ## import cost of functions/main.py against vertexai.batch_prediction
	$(PY) tests/bench/bench_coldstart.py

demo: $(STAMP) ## the main job: start the local stack, drop examples/requests.jsonl, print the results
	$(VENV)/bin/dropbatch local up
	@echo; echo "== a broken file is caught in seconds, by line:"
	$(VENV)/bin/dropbatch validate examples/broken.jsonl || echo "(dropbatch validate exits 1 on an invalid file)"
	@echo; echo "== drop examples/requests.jsonl and wait for the results:"
	$(VENV)/bin/dropbatch run examples/requests.jsonl --out out/demo
	@echo; echo "== the first results, in the file's order (out/demo/results.jsonl):"
	@$(PY) -c "import json; [print(f'  {r[\"key\"]:<16} {r[\"status\"]:<10} {(r[\"text\"] or \"\").replace(chr(10), chr(32))[:70]}') for r in map(json.loads, open('out/demo/results.jsonl').readlines()[:5])]"
	@echo; echo "== the same results in BigQuery (the results table, queried with SQL):"
	@$(PY) examples/query_results.py out/demo
	@echo; echo "The stack keeps running: 'make status' describes it, 'make down' stops it."

up: $(STAMP) ## start the local stack
	$(VENV)/bin/dropbatch local up

down: ## stop the local stack (its bucket's files are kept; `dropbatch local down --wipe` deletes them)
	-$(VENV)/bin/dropbatch local down

status: ## describe the local stack
	$(VENV)/bin/dropbatch local status

bench-split: $(STAMP) ## result writing: bounded pool vs sequential through a 20 ms proxy; a split in ten increments vs once
	$(PY) tests/bench/bench_split.py
	$(PY) tests/bench/bench_incremental.py

bench-split-memory: $(STAMP) ## split memory: the index for 1M requests, streaming a 1 GB prediction file
	$(PY) tests/bench/bench_split_memory.py

bench-stage: $(STAMP) ## the submit function's own work: validating and staging 300 MB in one process, against validating
	$(PY) tests/bench/bench_stage.py

bench-submit: $(STAMP) ## a 3 GB file submitted in one streaming pass with continuations, against validation alone
	$(PY) tests/bench/bench_submit.py

bench-e2e: $(STAMP) ## upload to terminal message for 1,000 requests on the local stack; calls per batch
	$(PY) tests/bench/bench_e2e.py

bench-retry: $(STAMP) ## restaging a 96 MB retry round: CPU against downloading the part
	$(PY) tests/bench/bench_retry.py

bench-iam: $(STAMP) ## what enforcing infra/'s grants costs: object writes and reads through the storage front vs direct
	$(PY) tests/bench/bench_iam.py

bench-soak: $(STAMP) ## 20 files of 1,000 requests dropped at once; throughput and peak memory per function
	BENCH_FILES=$(SOAK_FILES) $(PY) tests/bench/bench_e2e.py

bench-reuse: $(STAMP) ## 10,000 requests dropped again with 100 changed: requests sent, results reused, time
	$(PY) tests/bench/bench_reuse.py

bench-slots: $(STAMP) ## 30 batches, 2 job slots: ledger reads a sweep tick costs while 28 batches wait
	$(PY) tests/bench/bench_slots.py

clean: ## remove the venvs and caches
	rm -rf $(VENV) .venv-checkov .cache .pytest_cache .hypothesis
