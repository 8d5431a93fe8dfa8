"""End to end: the real pipeline under `dvc repro` in a temporary git repo, trained once per
run (tests/support/e2e.py) and read here; the queued experiments are in test_queue_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from tests.support.e2e import MODELS, copy_project, ran_stages
from tests.support.e2e import run as sh

pytestmark = pytest.mark.slow

# Test accuracy floors on digits with the baseline's short training (tests/support/e2e.py).
# A correct model clears its floor by 0.05 or more; a model trained on shuffled labels, or by
# an optimizer that climbs the loss, scores near 0.1. (docs/development.md lists which tests
# caught each deliberate breakage.)
FLOORS = {"numpy_dnn": 0.8, "numpy_cnn": 0.7, "keras_mlp": 0.8, "cnn": 0.7, "logreg": 0.9}


def _model_info(project: Path, uri: str) -> mlflow.models.model.ModelInfo:
    """The MLflow model behind a `models:/` URI in the project's store."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return mlflow.models.get_model_info(uri)
    finally:
        mlflow.set_tracking_uri(previous)


def test_repro_writes_metrics_and_one_mlflow_run_per_model(baseline: Path,
                                                           tmp_path: Path) -> None:
    project = baseline
    output = (baseline.parent / "repro.log").read_text()
    assert {f"train@{m}" for m in MODELS} <= ran_stages(output)
    # A user reads this log: no library's INFO lines in it (MLflow's input example check)
    assert not [line for line in output.splitlines() if " INFO " in line], output[-3000:]
    # ... and no Keras progress bar (MLflow's Keras flavor predicts when it logs a model)
    assert not [line for line in output.splitlines() if "━" in line or "/step" in line], \
        output[-3000:]

    test_labels = np.load(project / "data/prepared/test_labels.npy", allow_pickle=False)
    for model in MODELS:
        metrics = json.loads((project / "reports" / model / "metrics.json").read_text())
        for split in ("val", "test"):
            assert metrics[split]["accuracy"] >= FLOORS[model], (model, split, metrics)
            assert 0 < metrics[split]["loss"] < 1.5, (model, split, metrics)
            assert metrics[split]["f1_macro"] >= FLOORS[model] - 0.1, (model, split, metrics)
        history = (project / "reports" / model / "history.csv").read_text().splitlines()
        # numpy_dnn adds a learning_rate column after the shared ones
        assert history[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy")
        confusion = (project / "reports" / model / "confusion.csv").read_text().splitlines()
        assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 360
        # scored on the test split: its labels, in order, and the accuracy they give
        pairs = np.array([line.split(",") for line in confusion[1:]], dtype=np.int64)
        np.testing.assert_array_equal(pairs[:, 0], test_labels)
        assert (pairs[:, 0] == pairs[:, 1]).mean() == pytest.approx(metrics["test"]["accuracy"])
        per_class = json.loads((project / "reports" / model / "per_class.json").read_text())
        assert sorted(per_class) == [str(digit) for digit in range(10)]
        assert sum(scores["support"] for scores in per_class.values()) == 360
        plots = sorted(path.name for path in (project / "reports" / model / "plots").iterdir())
        assert plots == ["confusion_matrix.png", "learning_curves.png", "misclassified.png",
                         "probabilities.png"]
    summary = (project / "reports" / "summary.md").read_text()
    assert all(f"| {m} |" in summary for m in MODELS)
    compared = json.loads((project / "reports" / "summary.json").read_text())
    assert len(compared["test_pairs"]) == len(MODELS) * (len(MODELS) - 1) // 2
    best = compared["best_by_validation"]
    assert best["model"] in MODELS and best["verdict"].startswith("Best by validation accuracy")
    assert "## Pairs of models on the same 360 test images" in summary
    assert (project / "reports" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    assert experiment.artifact_location.startswith((project / "mlartifacts").as_uri())
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["model"] for run in runs) == sorted(MODELS)
    digests: list[dict[str, str]] = []
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
        for split in ("val", "test"):  # each headline metric's 95% interval, as columns
            for key in ("accuracy_low", "accuracy_high", "f1_macro_low", "f1_macro_high"):
                assert run.data.metrics[f"{split}.{key}"] == pytest.approx(metrics[split][key])
            low, high = metrics[split]["accuracy_low"], metrics[split]["accuracy_high"]
            assert 0 <= low <= metrics[split]["accuracy"] <= high <= 1
        predictions = (project / "reports" / model / "predictions.csv").read_text().splitlines()
        assert predictions[0] == "split,index,label,predicted,confidence"
        assert len(predictions) == 1 + 288 + 360  # every validation and test image
        epochs = len((project / "reports" / model / "history.csv").read_text().splitlines()) - 1
        steps = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [metric.step for metric in steps] == list(range(1, epochs + 1))
        artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "confusion.csv", "metrics.json", "per_class.json",
                "predictions.csv"} <= artifacts
        pngs = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
        assert "plots/confusion_matrix.png" in pngs and "plots/misclassified.png" in pngs
        assert "plots/probabilities.png" in pngs
        data = {item.path for item in client.list_artifacts(run.info.run_id, "data")}
        assert {"data/samples.png", "data/class_counts.png", "data/class_counts.csv"} <= data
        info = json.loads((project / "models" / model / "train_info.json").read_text())
        logged = _model_info(project, info["mlflow_model_uri"])
        assert logged.run_id == run.info.run_id and logged.signature is not None
        assert ("keras" in logged.flavors) == (model in ("keras_mlp", "cnn"))
        assert logged.metadata["classes"] == [str(n) for n in range(10)]  # with the model
        assert logged.metadata["input_shape"] == [8, 8, 1]
        assert logged.saved_input_example_info is not None
        # The data as MLflow datasets, each with the digest of its files: the same in
        # every run on this data.
        inputs = {item.dataset.name: item.dataset.digest for item in run.inputs.dataset_inputs}
        assert set(inputs) == {"digits-training", "digits-validation", "digits-testing"}
        digests.append(inputs)
    assert all(found == digests[0] for found in digests)
    # MLflow 3's model view ranks the logged models by the intervals too.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    ranked = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list",
        order_by=[{"field_name": "metrics.test.accuracy_low", "ascending": False}])
    lows = [{metric.key: metric.value for metric in logged.metrics}["test.accuracy_low"]
            for logged in ranked]
    assert len(lows) == len(MODELS) and lows == sorted(lows, reverse=True)
    numpy_run = next(run for run in runs if run.data.tags["model"] == "numpy_dnn")
    section = yaml.safe_load((project / "params.yaml").read_text())["numpy_dnn"]
    assert numpy_run.data.params["hidden_layers"] == str(section["hidden_layers"])
    assert numpy_run.data.params["early_stopping_patience"] == str(
        section["early_stopping_patience"])

    # A copy of the trained project (what a clone with the DVC cache is) is up to date.
    again = sh(["dvc", "repro"], copy_project(project, tmp_path / "copy"))
    assert ran_stages(again) == set()
    assert "up to date" in again


def test_dvc_shows_metrics_plots_and_experiments(baseline: Path) -> None:
    project = baseline  # read only
    metrics = sh(["dvc", "metrics", "show", "--json"], project)
    for model in MODELS:
        assert f"reports/{model}/metrics.json" in metrics
    assert json.loads(metrics), "dvc metrics show printed no JSON"

    plots = sh(["dvc", "plots", "show", "--json", "--split"], project)
    assert "Validation accuracy per epoch" in plots
    for model in MODELS:
        assert f"reports/{model}/confusion.csv" in plots
        assert f"reports/{model}/plots/learning_curves.png" in plots  # image plots too
    assert "reports/summary.png" in plots
    assert "reports/data/samples.png" in plots and "Training images per class" in plots

    experiments = json.loads(sh(["dvc", "exp", "show", "--json"], project))
    text = json.dumps(experiments)
    for model in MODELS:
        assert f'"reports/{model}/metrics.json"' in text
    assert '"accuracy"' in text and '"f1_macro"' in text


def test_each_models_params_invalidate_only_its_own_train_stage(
    baseline: Path, tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path / "project")
    # `dvc repro --dry` asks DVC's own graph what a change would rerun, without starting
    # TensorFlow; numpy_dnn and logreg experiments run for real in the tests around this one.
    original = (project / "params.yaml").read_text()
    changes = {"keras_mlp": "learning_rate", "cnn": "learning_rate"}
    try:
        for model, key in changes.items():
            params = yaml.safe_load(original)
            params[model][key] = params[model][key] * 0.5 + 1e-4
            (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            output = sh(["dvc", "repro", "--dry"], project)
            # Only this model's train stage sees a change. (--dry does not follow it
            # downstream: evaluate@<model> and report rerun when models/<model> changes.)
            assert ran_stages(output) == {f"train@{model}"}
    finally:
        (project / "params.yaml").write_text(original)
    assert ran_stages(sh(["dvc", "repro", "--dry"], project)) == set()


