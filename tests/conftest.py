"""Shared fixtures: tiny datasets in the data contract, and an isolated MLflow store."""

from __future__ import annotations

import importlib.abc
import os
import shutil
import sys
from pathlib import Path

import pytest

# The longest files first. `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`:
# one worker trains the shared baseline (test_pipeline_e2e) while the other runs the sweeps,
# which need no baseline (the team tests do: second, they waited ~100 s for it);
# whichever is free next takes the queued experiments (which copy the baseline), and the
# unit tests fill in.
LONGEST_FIRST = {"test_pipeline_e2e.py": 0, "test_sweep_e2e.py": 1, "test_team_e2e.py": 2,
                 "test_benchmark_pipelines.py": 3, "test_rerun_scope.py": 4,
                 "test_queue_e2e.py": 5, "test_store_e2e.py": 6, "test_resume_e2e.py": 7,
                 "test_benchmark_scripts.py": 8, "test_datasets_e2e.py": 9,
                 "test_mlflow_ui.py": 10}

# Each pytest worker on one BLAS thread, and so each stage, sweep trial and server it starts:
# `make test` runs two workers on two cores, and OpenBLAS's threads spin after each product,
# so two workers' stages on two threads each spent 12-25% more CPU time for the same training
# (benchmarks/README.md, "The suite's time"). TensorFlow's thread counts are fixed by the
# product (nnlab/models/keras/placement.py). Set before anything here imports NumPy.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: LONGEST_FIRST.get(item.path.name, len(LONGEST_FIRST)))


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """`make test-fast` promises no TensorFlow import (40-50 s on the CI machine): a test that
    imports it, directly or through nnlab, fails at once and says how to fix that."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in ("tensorflow", "keras"):
            raise ImportError(
                f"`make test-fast` does not import {name}: mark the test that needs it "
                "@pytest.mark.tensorflow (the full `make test` runs it)")


class _NoTensorFlowUnder(importlib.abc.MetaPathFinder):
    """The Keras tests on another backend (tests/unit/models/test_backends.py): a model on JAX
    must never import TensorFlow."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "tensorflow":
            raise ImportError(f"{name} imported while Keras runs on {KERAS_BACKEND}")


KERAS_BACKEND = os.environ.get("NNLAB_TEST_KERAS_BACKEND")
if KERAS_BACKEND:
    os.environ["KERAS_BACKEND"] = KERAS_BACKEND
    if KERAS_BACKEND != "tensorflow":
        sys.meta_path.insert(0, _NoTensorFlowUnder())
FAST = os.environ.get("NNLAB_TEST_FAST") == "1"
if FAST:
    sys.meta_path.insert(0, _NoTensorFlow())
# Test modules that import TensorFlow as they are collected: only the full suite collects them.
collect_ignore = ["unit/models/test_numpy_dnn_vs_keras.py"] if FAST else []


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained baseline project, shared by every worker: read it, or copy it to change it
    (tests/support/e2e.py)."""
    from tests.support.e2e import shared_baseline

    return shared_baseline(tmp_path_factory)


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow database with its schema created and migrated, made once per worker:
    creating one takes a few seconds, copying it a few milliseconds."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_store: Path) -> str:
    """A fresh SQLite MLflow store under tmp_path, used as the project root."""
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
