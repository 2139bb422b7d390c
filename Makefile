# The README's two commands: `make run` and `make test`. Both create .venv when missing and
# install torch==2.13.0 (the CPU build) before anything that depends on torch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: run test lint install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install torch==2.13.0
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/ragsvc serve

test: install-dev lint
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check ragsvc ingest indexes tests benchmarks
	$(BIN)/ruff format --check ragsvc ingest indexes tests benchmarks
	$(BIN)/mypy --cache-dir .venv/.mypy_cache

clean:
	rm -rf $(VENV) build *.egg-info
