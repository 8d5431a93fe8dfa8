# Reproducible image-classification experiments. Start with `make run`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages run `python -m stages.<name>`: make that the venv's python for everything below.
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
UI_PORT ?= 5000

.PHONY: help install run test lint typecheck ui lock clean

help:
	@echo "make run    install the pinned environment, run the pipeline, print the comparison"
	@echo "make test   the whole test suite, lint and type checks included"
	@echo "make ui     open the MLflow UI on http://127.0.0.1:$(UI_PORT)"
	@echo "make lock   re-pin requirements.lock after changing pyproject.toml"

# The stamp is rebuilt whenever the lock file or the project metadata changes.
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

install: $(VENV)/.installed

run: install
	dvc repro
	@echo
	@cat reports/summary.md
	@echo
	@echo "Compare runs in the MLflow UI:  make ui   (then open http://127.0.0.1:$(UI_PORT))"

lint: install
	ruff check nnlab stages tests benchmarks

typecheck: install
	mypy nnlab

# Two pytest workers (one per core): the end-to-end files run side by side (see tests/conftest.py).
test: install
	ruff check nnlab stages tests benchmarks
	mypy nnlab
	python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

ui: install
	mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--host 127.0.0.1 --port $(UI_PORT) --workers 1

# Re-resolve every pinned version from pyproject.toml in a throw-away venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable --all \
		| grep -v -E '^(nnlab|pip)==' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf data models mlflow.db mlartifacts .mlflow.lock
