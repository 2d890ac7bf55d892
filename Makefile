# The two commands of the README, and a few conveniences.
#   make demo   installs hazardwatch into .venv and runs the embedded demo (no services needed)
#   make test   installs everything, starts the local services and runs the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install services-up services-down services-status unit integration lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
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

bench: install
	bash scripts/bench
