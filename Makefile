# make run   - start the service (embedded Redis, API, workers) in the foreground
# make test  - lint, type-check and run every test
# Everything runs from .venv, created and installed on first use; a stamp file that
# depends on pyproject.toml keeps later runs from reinstalling.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
DATA_DIR ?=
SHARED ?= ../shared
PYTEST_ARGS ?=

.PHONY: run test lint typecheck pytest bench eval install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: $(VENV)/.installed
	$(BIN)/newsdedup up --host $(HOST) --port $(PORT) --workers $(WORKERS) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

eval: $(VENV)/.installed
	@found=0; for f in $(SHARED)/data/dev/*.jsonl.gz; do \
		[ -e "$$f" ] || continue; found=1; \
		echo "== $$f"; $(BIN)/newsdedup eval "$$f" || exit $$?; \
	done; \
	[ $$found = 1 ] || echo "no labelled sets in $(SHARED)/data/dev; nothing to evaluate"

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
