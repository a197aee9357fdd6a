# Two commands do all the set-up, both idempotent:
#   make test    create .venv (if missing), install initlab with its dev extras, lint, run pytest
#   make sweep   same install, then the tutorial's sweep: init={zero,xavier,he} x norm={none,batchnorm}
# Point the sweep at an existing MNIST folder (one holding MNIST/raw) with DATA_ROOT=...

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.initlab-installed
DATA_ROOT ?=
SWEEP ?= init=zero,xavier,he norm=none,batchnorm
PYTEST_ARGS ?=

.PHONY: install test lint sweep clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

sweep: install
	$(PY) train.py -m $(SWEEP) $(if $(DATA_ROOT),data.root=$(DATA_ROOT))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
