# One task runner for people and CI alike. `make demo` and `make test` are the Quickstart.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := examples/the-man-without-a-body.pdf

.PHONY: help setup system-deps demo test lint typecheck pytest lock bench clean

help:
	@echo "make demo       set up .venv and summarize $(SAMPLE) with the offline model"
	@echo "make test       set up .venv and run lint, type checks and the whole test suite"
	@echo "make bench      run the benchmarks (results: docs/benchmarks.md)"
	@echo "make lock       re-pin requirements.lock (with hashes) from pyproject.toml"

system-deps:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Graphviz (the 'dot' binary renders SVG/PNG diagrams)..."; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
		|| echo "warning: could not install Graphviz; SVG/PNG rendering will say how. DOT and Mermaid still work."; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	else \
		echo "note: Graphviz 'dot' is missing: install it (apt-get install graphviz, brew install graphviz) for SVG/PNG diagrams."; \
	fi

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "promptdag needs Python >= 3.11; set PYTHON=python3.11")'
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	$(BIN)/promptdag summarize $(SAMPLE)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

bench: setup
	$(BIN)/python -m benchmarks

lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --no-emit-index-url \
		--python-version 3.11 -o requirements.lock
	@! grep -n '://' requirements.lock

clean:
	rm -rf $(VENV) .promptdag .pytest_cache .ruff_cache .mypy_cache *.egg-info
