# Reproducible image-classification experiments. Start with `make run`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages run `python -m stages.<name>`: make that the venv's python for everything below.
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
UI_PORT ?= 5000

.PHONY: help install run test test-fast lint typecheck ui server server-status server-stop \
	lock lock-upgrade clean

help:
	@echo "make run        install the pinned environment, check params.yaml, run the pipeline, print the comparison"
	@echo "make test       the whole test suite, lint and type checks included"
	@echo "make test-fast  unit tests only (no TensorFlow, no dvc subprocess): the coding loop"
	@echo "make ui         open the MLflow UI on http://127.0.0.1:$(UI_PORT)"
	@echo "make server     start the team stack: MLflow server on PostgreSQL, S3 artifacts, DVC remote"
	@echo "make server-status / server-stop   what runs / stop it all"
	@echo "make lock       re-pin requirements.lock after changing pyproject.toml (uv pip compile)"
	@echo "make lock-upgrade  the same, moving every package to its newest allowed version"

# The stamp is rebuilt whenever the lock file or the project metadata changes.
# uv installs it (pip only if uv cannot be installed); tools/install.py passes pip's configured
# sources (index, extra indexes, find-links, CA certificate) on to uv.
$(VENV)/.installed: requirements.lock pyproject.toml tools/install.py
	$(PYTHON) tools/install.py sync $(VENV) requirements.lock
	@touch $@

install: $(VENV)/.installed

run: install
	nnlab check
	dvc repro
	@echo
	@cat reports/summary.md
	@echo
	@nnlab ui --link --port $(UI_PORT)

lint: install
	ruff check nnlab stages tests benchmarks tools

typecheck: install
	mypy nnlab

# Two pytest workers (one per core): the end-to-end files run side by side (see tests/conftest.py).
test: install
	nnlab check
	ruff check nnlab stages tests benchmarks tools
	mypy nnlab
	python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=30 -m "not loop"

# The loop while coding: unit tests only. No TensorFlow import (tests/conftest.py refuses it)
# and no `dvc` or server subprocess; `make test` runs everything.
test-fast: install
	nnlab check
	ruff check nnlab stages tests benchmarks tools
	NNLAB_TEST_FAST=1 python -m pytest -n 2 -m "not slow and not tensorflow and not loop" -q

# `nnlab ui` makes or checks the store under the stages' lock, ends runs whose process died,
# prints the link to the training runs, then runs `mlflow ui`.
ui: install
	nnlab ui --port $(UI_PORT)

# The team stack (nnlab/server/): PostgreSQL, SeaweedFS S3, `mlflow server` and Optuna's gRPC
# proxy, all from the lock file. Options: `nnlab server start --help`.
server: install
	nnlab server start

server-status: install
	nnlab server status

server-stop: install
	nnlab server stop

# Re-pin requirements.lock from pyproject.toml with `uv pip compile`: versions already pinned
# stay unless they no longer fit; `make lock-upgrade` moves everything to the newest allowed.
lock: install
	$(PYTHON) tools/install.py lock $(VENV) requirements.lock

lock-upgrade: install
	$(PYTHON) tools/install.py lock $(VENV) requirements.lock --upgrade

clean:
	rm -rf data models mlflow.db mlartifacts .mlflow.lock
