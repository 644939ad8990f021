# The targets README.md tells people to run. Everything runs from a local virtualenv that
# `make` creates and keeps in sync with pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install test test-unit test-integration lint format demo bench bench-domain kafka-start kafka-stop clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install iwd-stream with its dev tools

test: install  ## every test: unit, then integration and e2e on a real Kafka broker it starts
	IWD_REQUIRE_KAFKA=$${IWD_REQUIRE_KAFKA:-1} $(BIN)/pytest tests $(PYTEST_ARGS)

test-unit: install  ## the broker-free tests only (seconds)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install  ## the tests that cross a real Kafka broker
	IWD_REQUIRE_KAFKA=1 $(BIN)/pytest tests/integration tests/e2e $(PYTEST_ARGS)

lint: install  ## ruff (lint + format check) and mypy on the package
	$(BIN)/ruff check iwd_stream tests bench
	$(BIN)/ruff format --check iwd_stream tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format iwd_stream tests bench
	$(BIN)/ruff check --fix iwd_stream tests bench

demo: install  ## the main job: real ServiceNow incidents through the engine, live view, summary
	$(BIN)/iwd-stream demo

bench-domain: install  ## pure domain figures: scoring, next-change, index, tick, dispatch
	$(BIN)/python bench/bench_domain.py

bench: install  ## pipeline figures on a real broker, ~10 min (BENCH_ARGS=--quick: ~2 min, --full: 1M items)
	$(BIN)/python bench/bench_pipeline.py $(BENCH_ARGS)

kafka-start: install  ## a local Apache Kafka (KRaft) for manual runs; prints its address
	$(BIN)/iwd-stream kafka start

kafka-stop: install
	$(BIN)/iwd-stream kafka stop

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
