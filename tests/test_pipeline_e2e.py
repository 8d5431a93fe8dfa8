"""End to end: the real pipeline under `dvc repro` and `dvc exp run` in a temporary git repo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

MODELS = ["numpy_dnn", "keras_mlp", "cnn", "logreg"]
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "data", "models", "mlflow.db", "mlartifacts", ".mlflow.lock", "cache",
    "tmp", "__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache",
)


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
        env.pop(name, None)
    # Output goes to a file, not a pipe: `dvc queue start` leaves daemon workers that inherit
    # its stdout, and reading a pipe to EOF would wait for them to finish the whole queue.
    with tempfile.TemporaryFile("w+") as log:
        result = subprocess.run(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                text=True, timeout=1800)
        log.seek(0)
        output = log.read()
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return output


def _model_info(project: Path, uri: str) -> mlflow.models.model.ModelInfo:
    """The MLflow model behind a `models:/` URI in the project's store."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return mlflow.models.get_model_info(uri)
    finally:
        mlflow.set_tracking_uri(previous)


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this repository with fast params, committed in a new git repo."""
    path = tmp_path_factory.mktemp("e2e") / "project"
    shutil.copytree(ROOT, path, ignore=COPY_IGNORE)
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["numpy_dnn"]["epochs"] = 3
    params["keras_mlp"]["epochs"] = 2
    params["cnn"].update(epochs=1, dense_units=[32])
    params["logreg"]["max_iter"] = 200
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in ("dvc.lock",):
        (path / name).unlink(missing_ok=True)
    _run(["git", "init", "-q"], path)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], path)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], path)
    return path


def test_repro_writes_metrics_and_one_mlflow_run_per_model(project: Path) -> None:
    output = _run(["dvc", "repro"], project)
    assert {f"train@{m}" for m in MODELS} <= _ran_stages(output)

    for model in MODELS:
        metrics = json.loads((project / "reports" / model / "metrics.json").read_text())
        for split in ("val", "test"):
            assert 0.0 <= metrics[split]["accuracy"] <= 1.0
            assert metrics[split]["loss"] > 0
            assert 0.0 <= metrics[split]["f1_macro"] <= 1.0
        history = (project / "reports" / model / "history.csv").read_text().splitlines()
        # numpy_dnn adds a learning_rate column after the shared ones
        assert history[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy")
        confusion = (project / "reports" / model / "confusion.csv").read_text().splitlines()
        assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 360
        per_class = json.loads((project / "reports" / model / "per_class.json").read_text())
        assert sorted(per_class) == [str(digit) for digit in range(10)]
        assert sum(scores["support"] for scores in per_class.values()) == 360
        plots = sorted(path.name for path in (project / "reports" / model / "plots").iterdir())
        assert plots == ["confusion_matrix.png", "learning_curves.png", "misclassified.png"]
    # logreg is a real baseline, not a placeholder: it must beat chance by far.
    logreg = json.loads((project / "reports/logreg/metrics.json").read_text())
    assert logreg["test"]["accuracy"] > 0.9
    summary = (project / "reports" / "summary.md").read_text()
    assert all(f"| {m} |" in summary for m in MODELS)
    assert (project / "reports" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    assert experiment.artifact_location.startswith((project / "mlartifacts").as_uri())
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["model"] for run in runs) == sorted(MODELS)
    for run in runs:
        model = run.data.tags["model"]
        assert run.info.status == "FINISHED"
        assert run.data.params["seed"] == "42" and run.data.params["dataset"] == "digits"
        assert run.data.tags["dvc.exp_name"] == "workspace"
        assert run.data.tags["dvc.stage"] == f"train@{model}"
        assert len(run.data.tags["git.commit"]) == 40
        metrics = json.loads((project / "reports" / model / "metrics.json").read_text())
        assert run.data.metrics["test.accuracy"] == pytest.approx(metrics["test"]["accuracy"])
        assert run.data.metrics["val.f1_macro"] == pytest.approx(metrics["val"]["f1_macro"])
        epochs = len((project / "reports" / model / "history.csv").read_text().splitlines()) - 1
        steps = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [metric.step for metric in steps] == list(range(1, epochs + 1))
        artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "confusion.csv", "metrics.json", "per_class.json"} <= artifacts
        pngs = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
        assert "plots/confusion_matrix.png" in pngs and "plots/misclassified.png" in pngs
        info = json.loads((project / "models" / model / "train_info.json").read_text())
        logged = _model_info(project, info["mlflow_model_uri"])
        assert logged.run_id == run.info.run_id and logged.signature is not None
        assert ("keras" in logged.flavors) == (model in ("keras_mlp", "cnn"))
    numpy_run = next(run for run in runs if run.data.tags["model"] == "numpy_dnn")
    assert numpy_run.data.params["hidden_layers"] == "[256, 128]"
    assert numpy_run.data.params["early_stopping_patience"] == "10"

    again = _run(["dvc", "repro"], project)
    assert _ran_stages(again) == set()
    assert "up to date" in again


def test_dvc_shows_metrics_plots_and_experiments(project: Path) -> None:
    metrics = _run(["dvc", "metrics", "show", "--json"], project)
    for model in MODELS:
        assert f"reports/{model}/metrics.json" in metrics
    assert json.loads(metrics), "dvc metrics show printed no JSON"

    plots = _run(["dvc", "plots", "show", "--json", "--split"], project)
    assert "Validation accuracy per epoch" in plots
    for model in MODELS:
        assert f"reports/{model}/confusion.csv" in plots
        assert f"reports/{model}/plots/learning_curves.png" in plots  # image plots too
    assert "reports/summary.png" in plots

    experiments = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    text = json.dumps(experiments)
    for model in MODELS:
        assert f'"reports/{model}/metrics.json"' in text
    assert '"accuracy"' in text and '"f1_macro"' in text


def test_each_models_params_invalidate_only_its_own_train_stage(project: Path) -> None:
    # `dvc repro --dry` asks DVC's own graph what a change would rerun, without starting
    # TensorFlow; numpy_dnn and logreg experiments run for real in the tests around this one.
    original = (project / "params.yaml").read_text()
    changes = {"keras_mlp": "learning_rate", "cnn": "learning_rate"}
    try:
        for model, key in changes.items():
            params = yaml.safe_load(original)
            params[model][key] = params[model][key] * 0.5 + 1e-4
            (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            output = _run(["dvc", "repro", "--dry"], project)
            # Only this model's train stage sees a change. (--dry does not follow it
            # downstream: evaluate@<model> and report rerun when models/<model> changes.)
            assert _ran_stages(output) == {f"train@{model}"}
    finally:
        (project / "params.yaml").write_text(original)
    assert _ran_stages(_run(["dvc", "repro", "--dry"], project)) == set()


def _git(project: Path, *args: str) -> str:
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], project).strip()


def _wait_for_queue(project: Path, names: list[str], timeout: float = 1500) -> dict[str, str]:
    """Poll `dvc queue status` until every named experiment has finished; name -> status."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, str] = {}
        for line in _run(["dvc", "queue", "status"], project).splitlines():
            words = line.split()
            for name in names:
                if name in words:
                    status[name] = words[-1]
        if all(status.get(name) in ("Success", "Failed") for name in names):
            return status
        assert time.monotonic() < deadline, f"queue still busy: {status}"
        time.sleep(5)


# Four experiments on two workers: three that each retrain one model, and one whose loss
# diverges.
QUEUED = {
    "q-numpy-fast": ["-S", "numpy_dnn.learning_rate=0.004"],
    "q-numpy-deep": ["-S", "numpy_dnn.hidden_layers=[32,16,16]"],
    "q-logreg-c": ["-S", "logreg.C=0.25"],
    "q-diverges": ["-S", "numpy_dnn.optimizer=sgd", "-S", "numpy_dnn.learning_rate=100000000.0",
                   "-S", "numpy_dnn.init=random"],
}


def test_queued_experiments_lose_no_mlflow_run(project: Path) -> None:
    # A queued experiment starts from a commit: commit the workspace, results included.
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "baseline for queued experiments")
    baseline = _git(project, "rev-parse", "HEAD")
    for name, settings in QUEUED.items():
        _run(["dvc", "exp", "run", "--queue", "--name", name, *settings], project)
    _run(["dvc", "queue", "start", "-j", "2"], project)
    status = _wait_for_queue(project, list(QUEUED))
    assert status == {name: "Failed" if name == "q-diverges" else "Success" for name in QUEUED}

    logs = {name: _run(["dvc", "queue", "logs", name], project) for name in QUEUED}
    for name, log in logs.items():
        assert "database is locked" not in log, name
    assert _ran_stages(logs["q-logreg-c"]) == {"train@logreg", "evaluate@logreg", "report"}
    assert _ran_stages(logs["q-numpy-fast"]) == {"train@numpy_dnn", "evaluate@numpy_dnn",
                                                 "report"}
    assert "lower numpy_dnn.learning_rate" in logs["q-diverges"]

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`dvc.exp_name` LIKE 'q-%'")
    by_name = {run.data.tags["dvc.exp_name"]: run for run in runs}
    assert len(runs) == len(QUEUED) and set(by_name) == set(QUEUED), "a run went missing"
    expected = {"q-numpy-fast": ("learning_rate", "0.004"),
                "q-numpy-deep": ("hidden_layers", "[32, 16, 16]"),
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

    shown = json.dumps(json.loads(_run(["dvc", "exp", "show", "--json"], project)))
    for name in expected:
        assert f'"{name}"' in shown


def test_applied_experiment_reproduces_its_metrics(project: Path) -> None:
    _run(["dvc", "exp", "apply", "q-numpy-deep"], project)
    applied = yaml.safe_load((project / "params.yaml").read_text())
    assert applied["numpy_dnn"]["hidden_layers"] == [32, 16, 16]
    before = {model: (project / "reports" / model / "metrics.json").read_bytes()
              for model in MODELS}
    output = _run(["dvc", "repro", "-f", *(f"evaluate@{model}" for model in MODELS)], project)
    assert {f"train@{model}" for model in MODELS} | {"split"} <= _ran_stages(output)
    for model in ("numpy_dnn", "logreg"):  # bit-identical
        assert (project / "reports" / model / "metrics.json").read_bytes() == before[model]
    for model in ("keras_mlp", "cnn"):  # TensorFlow: equal to 1e-6 on the same machine
        again = json.loads((project / "reports" / model / "metrics.json").read_text())
        for split, values in json.loads(before[model]).items():
            for name, value in values.items():
                assert again[split][name] == pytest.approx(value, abs=1e-6), (model, name)
