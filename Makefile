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

# The demo needs only the runtime dependencies: without the dev tools a fresh clone installs
# in about two thirds of the time, which keeps `make demo` within its few minutes.
RUNTIME_STAMP := $(VENV)/.installed-runtime
$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e .
	touch $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
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
