# The two set-up commands of the README: `make demo` and `make test`.
# Each bootstraps .venv (Python >= 3.11 and pip are all a fresh machine needs).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: demo test lint typecheck unit ui simulator bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/oe-assets demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check oe_assets oe_assets_tests
	$(BIN)/ruff format --check oe_assets oe_assets_tests

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/dagster definitions validate -m oe_assets.definitions

unit: $(STAMP)
	$(BIN)/pytest

ui: $(STAMP)
	$(BIN)/oe-assets ui

simulator: $(STAMP)
	$(BIN)/oe-assets simulator

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/oe-assets bench

clean:
	rm -rf $(VENV) dagster_home data .pytest_cache .mypy_cache .ruff_cache
