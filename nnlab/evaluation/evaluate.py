"""The evaluate stage: score a trained model on validation and test data, write metrics with
their 95% intervals, per-image results, per-class scores, confusion data and plots, and add
them to the model's MLflow run."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.contract import load_classes, load_split
from nnlab.core.files import read_json, reading, sha256, write_csv, write_json, write_text
from nnlab.core.layout import PLOTS_DIR, TRAIN_INFO_FILE, Layout
from nnlab.core.schema import Params
from nnlab.data import points
from nnlab.evaluation.metrics import (
    classification_metrics,
    confusion_counts,
    per_class_metrics,
    write_confusion,
)
from nnlab.evaluation.outcomes import COLUMNS as OUTCOMES_COLUMNS
from nnlab.evaluation.outcomes import OUTCOMES_FILE, write_outcomes
from nnlab.evaluation.uncertainty import headline_intervals
from nnlab.models.base import Inference, Split, load_predictor, saved_environment
from nnlab.tracking import mlflow_runs


def evaluate(model_name: str, params: Params, layout: Layout) -> dict[str, dict[str, float]]:
    """Score a trained model on validation and test data; write metrics, per-class scores,
    confusion data and the PNG plots, and add them all to the model's MLflow run."""
    mlflow_runs.check_server()  # a server that is down fails before the model is loaded

    model_dir = layout.model_dir(model_name)
    info = read_json(model_dir / TRAIN_INFO_FILE)
    if info.get("pruned"):
        return _pruned(model_name, params, layout, info)
    # On the backend it trained on (Keras's, recorded by train): a JAX model never starts
    # TensorFlow.
    os.environ.update(saved_environment(info))
    predict = load_predictor(model_name, model_dir)
    classes = load_classes(layout.prepared)
    sets = {
        "val": load_split(layout.split, "val"),
        "test": load_split(layout.prepared, "test"),
    }
    report_dir = layout.report_dir(model_name)
    plot_dir = report_dir / PLOTS_DIR
    shutil.rmtree(plot_dir, ignore_errors=True)
    with mlflow_runs.resume_run(params.data.dataset, info["mlflow_run_id"],
                                f"evaluate@{model_name}"):
        test_digest = sha256(*(layout.prepared / f"test_{kind}.npy"
                               for kind in ("images", "labels")))[:16]
        mlflow_runs.log_datasets(params.data.dataset, {"testing": (*sets["test"], test_digest)})
        outputs = {name: predict(images) for name, (images, _) in sets.items()}
        metrics = {name: {**classification_metrics(sets[name][1], outputs[name], len(classes)),
                          **headline_intervals(sets[name][1], outputs[name].argmax(axis=1),
                                               len(classes))}
                   for name in sets}
        labels = sets["test"][1]
        probabilities = outputs["test"]
        predicted = probabilities.argmax(axis=1)
        write_confusion(report_dir / "confusion.csv", labels, predicted, classes)
        write_json(report_dir / "per_class.json", per_class_metrics(labels, predicted, classes))
        write_json(report_dir / "metrics.json", metrics)
        write_outcomes(report_dir / OUTCOMES_FILE,
                       {name: (sets[name][1], outputs[name]) for name in sets})
        _plot(predict, sets["test"], probabilities, classes, report_dir,
              f"{model_name} on {params.data.dataset}", params.data.dataset == "planar")
        # "test.accuracy" etc., as `dvc exp show` names them; the per-epoch history owns the
        # Keras-style names ("val_accuracy"), so the two never collide in one run.
        flat = {f"{split}.{key}": value for split, values in metrics.items()
                for key, value in values.items()}
        data_dir = layout.reports / "data"  # the data_report stage's pictures, if it ran
        mlflow_runs.log_results(
            flat,
            [report_dir / name for name in ("metrics.json", "per_class.json", "confusion.csv",
                                            OUTCOMES_FILE)],
            folders={PLOTS_DIR: plot_dir, **({"data": data_dir} if data_dir.is_dir() else {})},
        )
    return metrics


def _pruned(model_name: str, params: Params, layout: Layout,
            info: dict[str, object]) -> dict[str, dict[str, float]]:
    """A sweep's pruned trial has no model to score: its metrics.json says `pruned` and holds
    the validation metrics of its last epoch; the learning curves are its only plot. Its
    MLflow run stays KILLED."""
    report_dir = layout.report_dir(model_name)
    history = read_history(report_dir / "history.csv")
    last = history[-1] if history else {}
    metrics: dict[str, dict[str, float]] = {"val": {
        key: last[f"val_{key}"] for key in ("accuracy", "loss") if f"val_{key}" in last}}
    write_json(report_dir / "metrics.json",
               {"pruned": True, "epochs": info.get("epochs"), **metrics})
    write_json(report_dir / "per_class.json", {})
    write_csv(report_dir / "confusion.csv", ["actual", "predicted"], [])
    write_text(report_dir / OUTCOMES_FILE, ",".join(OUTCOMES_COLUMNS) + "\n")
    plot_dir = report_dir / PLOTS_DIR
    shutil.rmtree(plot_dir, ignore_errors=True)
    plot_dir.mkdir(parents=True)
    if history:
        from nnlab.evaluation import plots

        plots.learning_curves_png(plot_dir / "learning_curves.png", history,
                                  f"{model_name} on {params.data.dataset} (pruned)",
                                  single_fit=False)
    return metrics


def _plot(predict: Inference, test: Split, probabilities: NDArray[np.float32],
          classes: list[str], report_dir: Path, title: str, planar_points: bool) -> None:
    """reports/<model>/plots/: confusion matrix, misclassified test images, probability bars,
    learning curves, and for 2-D points the decision boundary."""
    from nnlab.evaluation import bars, plots  # late: matplotlib takes seconds to import

    images, labels = np.asarray(test[0]), test[1]
    plot_dir = report_dir / PLOTS_DIR
    predicted = probabilities.argmax(axis=1)
    plots.confusion_matrix_png(
        plot_dir / "confusion_matrix.png",
        confusion_counts(labels, predicted, len(classes)), classes, f"{title}: test set",
    )
    plots.misclassified_png(plot_dir / "misclassified.png", images, labels, probabilities,
                            classes, title)
    if not planar_points:  # a point is not a picture: its decision boundary tells more
        chosen = bars.chosen_for_evaluation(labels, probabilities)
        bars.probabilities_png(plot_dir / "probabilities.png", images[chosen],
                               probabilities[chosen], classes,
                               f"{title}: the most confident mistakes, then a typical right "
                               "answer", labels=[int(labels[i]) for i in chosen])
    history = read_history(report_dir / "history.csv")
    if history:
        plots.learning_curves_png(plot_dir / "learning_curves.png", history, title)
    if planar_points:
        plots.decision_boundary_png(
            plot_dir / "decision_boundary.png",
            lambda grid: predict(points.to_pixels(grid)),
            points.coordinates(images), labels, classes, points.LIMIT,
            f"{title}: decision boundary and test points",
        )


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv as rows of floats (empty if the model has no per-epoch history)."""
    if not path.is_file():
        return []
    with reading(path, "the training history"), \
            open(path, encoding="utf-8", newline="") as handle:
        return [{key: float(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]
