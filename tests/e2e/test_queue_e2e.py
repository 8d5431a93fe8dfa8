"""End to end on copies of the trained baseline (tests/support/e2e.py): queued `dvc exp run`
experiments on two workers, each an MLflow run; `dvc exp apply` of an experiment, then a
forced rerun that reproduces its metrics; and the cnn on Keras's JAX backend."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.support.e2e import copy_project, git, import_recording, ran_stages, wait_for_queue
from tests.support.e2e import run as sh

pytestmark = pytest.mark.slow


# Three experiments on two workers: two that each retrain one model, and one whose loss
# diverges. (That a numpy_dnn experiment reruns exactly its stages and the report is checked
# in tests/e2e/test_repeat_e2e.py, on `nnlab repeat`'s experiments.)
QUEUED = {
    "q-numpy-deep": ["-S", "numpy_dnn.hidden_layers=[32,16,16]"],
    "q-logreg-c": ["-S", "logreg.C=0.25"],
    "q-diverges": ["-S", "numpy_dnn.learning_rate=10"],  # Adam: blows up, ends at chance
}


@pytest.fixture(scope="module")
def project(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained baseline. Its HEAD commit holds the results: a queued experiment
    starts from a commit."""
    return copy_project(baseline, tmp_path_factory.mktemp("queue") / "project")


def test_queued_experiments_lose_no_mlflow_run(project: Path) -> None:
    baseline = git(project, "rev-parse", "HEAD")
    for name, settings in QUEUED.items():
        sh(["dvc", "exp", "run", "--queue", "--name", name, *settings], project)
    sh(["dvc", "queue", "start", "-j", "2"], project)
    status = wait_for_queue(project, list(QUEUED), failing=frozenset({"q-diverges"}))
    assert status == {name: "Failed" if name == "q-diverges" else "Success" for name in QUEUED}

    logs = {name: sh(["dvc", "queue", "logs", name], project) for name in QUEUED}
    for name, log in logs.items():
        assert "database is locked" not in log, name
    assert ran_stages(logs["q-logreg-c"]) == {"train@logreg", "evaluate@logreg", "report"}
    assert ran_stages(logs["q-numpy-deep"]) == {"train@numpy_dnn", "evaluate@numpy_dnn",
                                                 "report"}
    assert "lower numpy_dnn.learning_rate" in logs["q-diverges"]

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`dvc.exp_name` LIKE 'q-%'")
    by_name = {run.data.tags["dvc.exp_name"]: run for run in runs}
    assert len(runs) == len(QUEUED) and set(by_name) == set(QUEUED), "a run went missing"
    expected = {"q-numpy-deep": ("hidden_layers", "[32, 16, 16]"),
                "q-logreg-c": ("C", "0.25")}
    for name, (key, value) in expected.items():
        run = by_name[name]
        assert run.data.params[key] == value, name
        assert run.info.status == "FINISHED" and "test.accuracy" in run.data.metrics, name
        assert run.data.tags["dvc.baseline_rev"] == baseline
        assert run.info.artifact_uri.startswith((project / "mlartifacts").as_uri())
    failed = by_name["q-diverges"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error"].startswith("DivergenceError: numpy_dnn: training loss")
    assert "test.accuracy" not in failed.data.metrics
    # No stray store in the temporary workspaces.
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))

    shown = json.dumps(json.loads(sh(["dvc", "exp", "show", "--json"], project)))
    for name in expected:
        assert f'"{name}"' in shown


def test_applied_experiment_reproduces_its_metrics(project: Path, baseline: Path) -> None:
    # q-numpy-deep, queued and run by the test above
    sh(["dvc", "exp", "apply", "q-numpy-deep"], project)
    applied = yaml.safe_load((project / "params.yaml").read_text())
    assert applied["numpy_dnn"]["hidden_layers"] == [32, 16, 16]
    # The experiment's own results came with it: numpy_dnn's changed, logreg's did not.
    before = {model: (project / "reports" / model / "metrics.json").read_bytes()
              for model in ("numpy_dnn", "logreg")}
    assert before["numpy_dnn"] != (baseline / "reports/numpy_dnn/metrics.json").read_bytes()
    # Retrained from scratch, from the split on (seeded), the metrics are bit-identical.
    # (The Keras models' run-to-run determinism is checked in-process in test_models:
    # retraining them here would start four TensorFlow processes.)
    output = sh(["dvc", "repro", "-f", "evaluate@numpy_dnn", "evaluate@logreg"], project)
    assert {"split", "train@numpy_dnn", "train@logreg"} <= ran_stages(output)
    for model, metrics in before.items():
        assert (project / "reports" / model / "metrics.json").read_bytes() == metrics, model


def test_dvc_exp_run_with_the_jax_backend_trains_and_evaluates_the_cnn_without_tensorflow(
        project: Path, baseline: Path, tmp_path: Path) -> None:
    output = sh(["dvc", "exp", "run", "--name", "cnn-jax", "-S", "cnn.backend=jax"], project,
                env=import_recording(tmp_path))
    assert ran_stages(output) == {"train@cnn", "evaluate@cnn", "report"}
    assert "train@cnn: training on cpu (jax)" in output
    for stage in ("train@cnn", "evaluate@cnn"):
        imported = json.loads((tmp_path / "imports" / f"{stage}.json").read_text())
        assert imported["jax"] and not imported["tensorflow_itself"], stage
    info = json.loads((project / "models/cnn/train_info.json").read_text())
    assert (info["backend"], info["device"]) == ("jax", "cpu")
    assert info["environment"] == {"KERAS_BACKEND": "jax"}
    # the same network and epochs as TensorFlow's, in other data orders: as good, not equal
    jax_accuracy = json.loads((project / "reports/cnn/metrics.json").read_text())["test"]
    tf_accuracy = json.loads((baseline / "reports/cnn/metrics.json").read_text())["test"]
    assert jax_accuracy["accuracy"] > tf_accuracy["accuracy"] - 0.05, (jax_accuracy, tf_accuracy)

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(info["mlflow_run_id"])
    assert run.data.params["backend"] == "jax" and run.data.tags["nnlab.backend"] == "jax"
    assert run.data.tags["nnlab.device"] == "cpu" and "test.accuracy" in run.data.metrics
    logged = client.get_logged_model(info["mlflow_model_uri"].removeprefix("models:/"))
    mlmodel = Path(logged.artifact_location.removeprefix("file://")) / "MLmodel"
    flavor = yaml.safe_load(mlmodel.read_text())["flavors"]["keras"]
    assert flavor["keras_backend"] == "jax"  # MLflow loads it on any backend
