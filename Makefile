# Two commands matter: `make serve` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export VLEDGER_DATABASE_URL ?= sqlite:///var/ledger.db

.PHONY: setup serve test lint typecheck unit demo bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

serve: setup  ## set up and run the API on the embedded SQLite store under ./var/
	@mkdir -p var
	@echo "Tip: 'make demo' fills the store with a realistic district from the 2017 plan."
	$(VENV)/bin/vledger serve

test: setup lint typecheck unit  ## set up and run every check and test

lint: setup
	$(VENV)/bin/ruff check ledger projections api tests bench

typecheck: setup
	$(VENV)/bin/mypy ledger projections api

unit: setup
	$(VENV)/bin/pytest -q

demo: setup  ## a realistic district (2,000 volunteers, 20,000 sessions) in the default store
	@mkdir -p var
	$(VENV)/bin/vledger demo

bench: setup  ## benchmarks beside their baselines; writes bench/results.json, docs/BENCHMARKS.md
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
