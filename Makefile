# Reproducible image-classification experiments. Start with `make run`.
SHELL := /bin/bash
# The newest supported Python on PATH that runs (a pyenv shim may not), unless PYTHON=... names one.
PYTHON ?= $(firstword $(foreach v,3.13 3.12 3.11,\
	$(shell python$(v) -c "" >/dev/null 2>&1 && command -v python$(v))))
VENV := .venv
# ACCEL=cuda installs the GPU builds (requirements-cuda.lock); the choice is kept in .venv, so
# `make run` afterwards stays on it, until `make install ACCEL=cpu`.
ACCEL ?= $(or $(shell cat $(VENV)/.accel 2>/dev/null),cpu)
LOCK_cpu := requirements.lock
LOCK_cuda := requirements-cuda.lock
LOCK := $(LOCK_$(ACCEL))
BIN := $(CURDIR)/$(VENV)/bin
# Stages run `python -m stages.<name>`: make that the venv's python for everything below.
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
UI_PORT ?= 5000

.PHONY: help install run test test-fast lint typecheck check-lock ui server server-status \
	server-stop lock lock-upgrade clean deps

help:
	@echo "make run        install the pinned environment, check params.yaml, run the pipeline, print the comparison"
	@echo "make test       the whole test suite, lint and type checks included"
	@echo "make test-fast  unit tests only (no TensorFlow, no dvc subprocess): the coding loop"
	@echo "make deps       write dvc.yaml's code deps from the imports (after adding or moving a module)"
	@echo "make ui         open the MLflow UI on http://127.0.0.1:$(UI_PORT)"
	@echo "make server     start the team stack: MLflow server on PostgreSQL, S3 artifacts, DVC remote"
	@echo "make server-status / server-stop   what runs / stop it all"
	@echo "make install ACCEL=cuda   the GPU builds (Linux, NVIDIA): TensorFlow, JAX and CuPy for CUDA 12"
	@echo "make lock       re-pin both lock files after changing pyproject.toml (uv pip compile)"
	@echo "make check-lock resolve both lock files for Python 3.11-3.13 on Linux x86_64/aarch64 and macOS arm64"
	@echo "make lock-upgrade  the same, moving every package to its newest allowed version"

# The stamp is rebuilt whenever the lock file or the project metadata changes, or ACCEL does.
# uv installs it (pip only if uv cannot be installed); tools/install.py passes pip's configured
# sources (index, extra indexes, find-links, CA certificate) on to uv.
$(VENV)/.installed-$(ACCEL): $(LOCK) pyproject.toml tools/install.py
	@test -n "$(LOCK)" || { echo "make: ACCEL=$(ACCEL) is not known: use ACCEL=cpu (the default) or ACCEL=cuda (Linux, NVIDIA GPU)"; exit 2; }
	@test -n "$(PYTHON)" || { echo "make: no python3.13, python3.12 or python3.11 on PATH: install one, or name it with make PYTHON=/path/to/python3.x"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1 || { echo "make: PYTHON=$(PYTHON) does not run as Python 3.11, 3.12 or 3.13: name one that does with make PYTHON=/path/to/python3.x"; exit 2; }
	$(PYTHON) tools/install.py sync $(VENV) $(LOCK)
	@rm -f $(VENV)/.installed*
	@echo $(ACCEL) > $(VENV)/.accel
	@touch $@

install: $(VENV)/.installed-$(ACCEL)

run: install
	nnlab check
	dvc repro
	@echo
	@cat reports/summary.md
	@echo
	@nnlab ui --link --port $(UI_PORT)

lint: install
	ruff check nnlab stages tests benchmarks tools
	deptry nnlab stages

typecheck: install
	mypy nnlab

# Two pytest workers (one per core): the end-to-end files run side by side (see tests/conftest.py).
# Each stage's code deps in dvc.yaml, exactly the files it imports (tools/deps.py).
deps: install
	python tools/deps.py

test: install check-lock
	nnlab check
	python tools/deps.py --check
	ruff check nnlab stages tests benchmarks tools
	deptry nnlab stages
	mypy nnlab
	python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=30 -m "not loop"

# The loop while coding: unit tests only. No TensorFlow import (tests/conftest.py refuses it)
# and no `dvc` or server subprocess; `make test` runs everything.
test-fast: install
	nnlab check
	python tools/deps.py --check
	ruff check nnlab stages tests benchmarks tools
	deptry nnlab stages
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

# Both lock files resolve, from wheels, for every supported Python and platform (uv's cache,
# else the package index). `make test` runs it.
check-lock: install
	python tools/install.py check $(VENV)

# Re-pin both lock files from pyproject.toml with `uv pip compile --universal`: versions already
# pinned stay unless they no longer fit; `make lock-upgrade` moves everything to the newest allowed.
lock: install
	python tools/install.py lock $(VENV)

lock-upgrade: install
	python tools/install.py lock $(VENV) --upgrade

clean:
	rm -rf data models mlflow.db mlartifacts .mlflow.lock
