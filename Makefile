# The two set-up commands of the README: `make demo` and `make test`.
# Each bootstraps .venv (Python 3.11, 3.12 or 3.13 with pip and venv are all a fresh machine needs;
# another interpreter: `make demo PYTHON=python3.12`).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: demo test lint typecheck pytest ui simulator bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' || \
		{ echo "oe_assets needs Python 3.11, 3.12 or 3.13; $(PYTHON) is $$($(PYTHON) --version 2>&1): try make PYTHON=python3.12"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
		{ echo "$(PYTHON) cannot create a virtual environment; on Debian and Ubuntu: sudo apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Dagster's instance folder, with the project's dagster.yaml (DuckDB pool, run monitoring).
$(DAGSTER_HOME)/dagster.yaml: oe_assets/orchestration/dagster_instance.yaml
	mkdir -p $(DAGSTER_HOME)
	cp oe_assets/orchestration/dagster_instance.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/oe-assets demo

# The whole suite (unit, integration, e2e) on every core: its tests are independent.
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check oe_assets oe_assets_tests
	$(BIN)/ruff format --check oe_assets oe_assets_tests

typecheck: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/mypy
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/dg check defs

pytest: $(STAMP)
	$(BIN)/pytest -n auto --dist worksteal

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/oe-assets ui

simulator: $(STAMP)
	$(BIN)/oe-assets simulator

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/oe-assets bench

clean:
	rm -rf $(VENV) dagster_home data .pytest_cache .mypy_cache .ruff_cache
