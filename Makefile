# One task runner for people and CI alike. `make demo` and `make test` are the Quickstart.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := examples/the-man-without-a-body.pdf

.PHONY: help setup system-deps demo test lint typecheck pytest gate lock bench clean

help:
	@echo "make demo       set up .venv and summarize $(SAMPLE) with the offline model"
	@echo "make test       set up .venv and run lint, type checks and the whole test suite"
	@echo "make bench      run the benchmarks (results: docs/benchmarks.md)"
	@echo "make lock       re-pin requirements.lock (with hashes) from pyproject.toml"

# System packages: Graphviz ('dot', for SVG/PNG diagrams) always; Chromium (the report
# screenshot test) for `make test`. Installed with apt-get when root (or passwordless sudo).
APT_PACKAGES := graphviz
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		bin=$$p; [ $$p = graphviz ] && bin=dot; command -v $$bin >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "Installing system packages:$$missing"; \
		($$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
		|| echo "warning: could not install$$missing; SVG/PNG rendering (graphviz) and the report screenshot test (chromium) will say so."; \
	else \
		echo "note: missing$$missing: install with your package manager (apt-get install$$missing, or brew install graphviz chromium)."; \
	fi

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "promptdag needs Python >= 3.11; set PYTHON=python3.11")'
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	$(BIN)/promptdag run summarize $(SAMPLE)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest test: APT_PACKAGES := graphviz chromium
pytest: setup
	$(BIN)/pytest

# The prompt gate against the merge base with origin/main (else main), as CI gates a pull
# request; on main itself, against the previous commit. Exit 3 (needs a judge or a reviewer's
# approval) is CI's to settle: here it is reported, not fatal.
gate: setup
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
		$(BIN)/promptdag gate --report-dir out/gate; code=$$?; \
		if [ $$code -eq 3 ]; then echo "gate: needs a judge or a reviewer's approval (see out/gate/report.md)"; \
		elif [ $$code -ne 0 ]; then exit $$code; fi; \
	else echo "gate: no previous commit to compare with (a shallow clone?): skipped"; fi

test: lint typecheck pytest gate

bench: setup
	$(BIN)/python -m benchmarks

lock:
	uv pip compile pyproject.toml --all-extras --generate-hashes --no-emit-index-url \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
	@! grep -n '://' requirements.lock

clean:
	rm -rf $(VENV) .promptdag .pytest_cache .ruff_cache .mypy_cache *.egg-info out
