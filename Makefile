# The two commands of the README, and a few conveniences.
#   make demo   installs hazardwatch into .venv and runs the embedded demo (no services needed)
#   make test   installs everything, starts the local services and runs the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check
# The demo needs only the runtime dependencies; the tests need the dev extra too.
BASE := $(VENV)/.installed-base
DEV := $(VENV)/.installed-dev

.PHONY: demo test install install-base services-up services-down services-status unit lint bench

$(BASE): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -U pip setuptools
	$(PIP) -e .
	touch $(BASE)

$(DEV): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -U pip setuptools
	$(PIP) -e '.[dev]'
	touch $(BASE) $(DEV)

install-base: $(BASE)
install: $(DEV)

demo: install-base
	$(BIN)/hazardwatch demo

test: install
	bash scripts/test

services-up:
	deploy/local/services up
services-down:
	deploy/local/services down
services-status:
	deploy/local/services status

unit: install
	$(BIN)/pytest -q tests/unit

lint: install
	$(BIN)/ruff check .

# Benchmarks print figures and ratios against a reference measured in the same run.
bench: install
	$(BIN)/python bench/ingest/run.py
	$(BIN)/python bench/rules/run.py
	$(BIN)/python bench/e2e/run.py
