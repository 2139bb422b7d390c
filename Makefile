# The README's two commands: `make run` and `make test` (the fast tier; `make test-all` runs
# every tier, as CI does). All create .venv when missing and install torch==2.13.0 (the CPU
# build) before anything that depends on torch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: run test test-all lint install install-dev browser clean

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

# The fast tier, run after every change: no test that starts a process (a server, a CLI in a
# subprocess, the extraction sandbox, Ray, milvus-lite's server, a browser, schemathesis).
test: install-dev lint
	$(BIN)/python -m pytest -m "not slow"

# Every tier, as CI runs it.
test-all: install-dev lint browser
	$(BIN)/python -m pytest

# The browser test drives Debian's headless Chromium; install it where we may (root with
# apt-get), otherwise the test is skipped and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null) || echo "could not install chromium: the browser test will be skipped"; \
	else echo "no chromium/chromedriver and not root: the browser test will be skipped"; fi

lint: install-dev
	$(BIN)/ruff check ragsvc ingest indexes tests benchmarks
	$(BIN)/ruff format --check ragsvc ingest indexes tests benchmarks
	$(BIN)/mypy --cache-dir .venv/.mypy_cache

clean:
	rm -rf $(VENV) build *.egg-info
