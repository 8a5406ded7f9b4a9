# MedIS framework: set-up and checks.  `make test` alone works on a fresh clone.
#   TORCH_SPEC  pip requirement for torch, installed before the package (default: CPU build 2.13.0).
#               GPU users: make setup TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
#   PYTHON      interpreter used to create the virtual environment.
PYTHON     ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV       ?= .venv
PY         := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-all clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
