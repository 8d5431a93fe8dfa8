"""What each dvc.yaml stage does, as typed functions the stage modules call.

Paths come in as arguments (the stage modules own the layout that dvc.yaml declares), so
every step can be unit-tested on a temporary folder.
"""

from __future__ import annotations

import csv
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab import tracking
from nnlab.data import (
    check_contract,
    load_classes,
    load_split,
    save_classes,
    save_split,
    stratified_split,
)
from nnlab.datasets import get_dataset
from nnlab.files import read_json, reading, sha256, write_csv, write_json, write_text
from nnlab.models import get_model_class
from nnlab.params import Params, flatten

# A fixed seed for the test hold-out: the test set must not move when `seed` changes,
# or test metrics of two experiments would not be comparable.
TEST_HOLDOUT_SEED = 20240101
# Every model's history.csv has these columns; a model may add more (numpy_dnn: learning_rate).
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
TRAIN_INFO_FILE = "train_info.json"
SKIPPED_FILE = "skipped.txt"
PLOTS_DIR = "plots"  # reports/<model>/plots/*.png


@dataclass(frozen=True)
class Layout:
    """Where the pipeline's outputs live (matches dvc.yaml)."""

    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def split(self) -> Path:
        return self.root / "data" / "split"

    def model_dir(self, model: str) -> Path:
        return self.root / "models" / model

    def report_dir(self, model: str) -> Path:
        return self.root / "reports" / model

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def outputs(self, stage: str, model: str | None = None) -> list[Path]:
        """What a stage writes (dvc.yaml's outs): removed when the stage fails or is stopped,
        so that no stale or half-written result looks valid. data/raw is not listed: a
        download resumes from its `.part` files."""
        if stage == "train" and model:
            model_dir = self.model_dir(model)
            return [model_dir, model_dir.with_name(model_dir.name + ".partial"),
                    self.report_dir(model) / "history.csv"]
        if stage == "evaluate" and model:
            return [self.report_dir(model) / name for name in
                    ("metrics.json", "per_class.json", "confusion.csv", PLOTS_DIR)]
        return {
            "prepare": [self.prepared],
            "split": [self.split],
            "report": [self.reports / f"summary.{kind}" for kind in ("md", "csv", "png")],
        }.get(stage, [])


def download(params: Params, layout: Layout) -> None:
    """Fetch and verify the raw files of `data.dataset` into data/raw."""
    get_dataset(params.data.dataset).download(layout.raw, params.data)


def prepare(params: Params, layout: Layout) -> dict[str, int]:
    """Convert raw files to the data contract; hold out a fixed stratified test set if needed.

    Returns the number of train and test samples written, and of unreadable files skipped.
    """
    source = get_dataset(params.data.dataset)
    raw = source.load(layout.raw, params.data)
    if raw.test_images is not None and raw.test_labels is not None:
        train_images, train_labels = raw.images, raw.labels
        test_images, test_labels = raw.test_images, raw.test_labels
    else:
        kept, held = stratified_split(raw.labels, params.data.test_fraction, TEST_HOLDOUT_SEED)
        train_images, train_labels = raw.images[kept], raw.labels[kept]
        test_images, test_labels = raw.images[held], raw.labels[held]
    n_classes = len(raw.classes)
    check_contract(train_images, train_labels, n_classes, "train")
    check_contract(test_images, test_labels, n_classes, "test")
    save_split(layout.prepared, "train", train_images, train_labels)
    save_split(layout.prepared, "test", test_images, test_labels)
    save_classes(layout.prepared, raw.classes)
    # Always written (empty when nothing was skipped), so the output set never changes.
    write_text(
        layout.prepared / SKIPPED_FILE,
        f"# {len(raw.skipped)} unreadable input(s) skipped\n"
        + "".join(f"{line}\n" for line in raw.skipped),
    )
    return {
        "train": int(train_labels.shape[0]),
        "test": int(test_labels.shape[0]),
        "skipped": len(raw.skipped),
    }


# Fewer training images than this in a class, and a model cannot learn it: refuse the split.
MIN_TRAIN_PER_CLASS = 5


def check_training_counts(labels: NDArray[np.int64], classes: list[str],
                          val_fraction: float) -> None:
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < MIN_TRAIN_PER_CLASS:
        poorest = int(counts.argmin())
        raise ValueError(
            f"data.val_fraction={val_fraction:g} leaves {counts[poorest]} training image(s) "
            f"of class {classes[poorest]!r} (at least {MIN_TRAIN_PER_CLASS} per class are "
            "needed); lower data.val_fraction or data.test_fraction, or add images"
        )


def split(params: Params, layout: Layout) -> dict[str, int]:
    """Take a stratified, seeded `data.val_fraction` validation set out of the training part."""
    images, labels = load_split(layout.prepared, "train")
    kept, held = stratified_split(labels, params.data.val_fraction, params.seed)
    check_training_counts(labels[kept], load_classes(layout.prepared), params.data.val_fraction)
    save_split(layout.split, "train", images[kept], labels[kept])
    save_split(layout.split, "val", images[held], labels[held])
    return {"train": int(kept.shape[0]), "val": int(held.shape[0])}


def train(model_name: str, params: Params, layout: Layout) -> dict[str, object]:
    """Train one model, log it to MLflow, and write models/<model>/ and its history.csv.

    The model is written to a temporary folder and renamed into place only after training
    succeeded, so a failed run (e.g. a diverging loss) never leaves a model that looks valid.
    """
    tracking.check_server()  # a server that is down fails here, not after training
    model_class = get_model_class(model_name)
    model_params = params.model_params(model_name)
    train_set = load_split(layout.split, "train")
    val_set = load_split(layout.split, "val")
    classes = load_classes(layout.prepared)
    dataset = params.data.dataset
    tags = {
        **tracking.dvc_tags(f"train@{model_name}"),
        "model": model_name,
        "dataset": dataset,
        "dataset.digest": sha256(
            *(layout.split / f"{name}_{kind}.npy" for name in ("train", "val")
              for kind in ("images", "labels"))
        )[:16],
    }
    run_params = {**flatten(model_params), "seed": params.seed, "dataset": dataset}
    model_dir = layout.model_dir(model_name)
    partial_dir = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(partial_dir, ignore_errors=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    with tracking.training_run(dataset, model_name, run_params, tags) as run_id:
        model = model_class(model_params, params.seed)
        start = time.perf_counter()
        history = model.fit(train_set, val_set, n_classes=len(classes))
        seconds = time.perf_counter() - start
        param_count = model.count_params()
        tracking.log_history(history)
        history_path = layout.report_dir(model_name) / "history.csv"
        extra = [key for key in history[0] if key not in HISTORY_COLUMNS] if history else []
        write_csv(history_path, HISTORY_COLUMNS + extra, history)
        info: dict[str, object] = {
            "model": model_name,
            "mlflow_run_id": run_id,
            "param_count": param_count,
            "training_seconds": round(seconds, 3),
            "samples_per_second": round(len(history) * len(train_set[1]) / seconds, 1),
            "epochs": len(history),
            # what `nnlab predict` needs to preprocess an image exactly like the training data
            "input_shape": [int(size) for size in train_set[0].shape[1:]],
            "classes": classes,
            "dataset": dataset,
        }
        try:
            model.save(partial_dir)
            info["mlflow_model_uri"] = tracking.log_model(
                model, model_name, partial_dir, train_set[0][:5]
            )
            write_json(partial_dir / TRAIN_INFO_FILE, info)
            partial_dir.rename(model_dir)
        finally:
            shutil.rmtree(partial_dir, ignore_errors=True)
        tracking.log_results(
            {"param_count": param_count, "training_seconds": seconds}, [history_path]
        )
    return info


def evaluate(model_name: str, params: Params, layout: Layout) -> dict[str, dict[str, float]]:
    """Score a trained model on validation and test data; write metrics, per-class scores,
    confusion data and the PNG plots, and add them all to the model's MLflow run."""
    tracking.check_server()  # a server that is down fails before the model is loaded
    # late: sklearn.metrics and matplotlib take seconds to import; other stages never need them
    from nnlab import plots
    from nnlab.evaluation import (
        classification_metrics,
        confusion_counts,
        per_class_metrics,
        write_confusion,
    )

    model_dir = layout.model_dir(model_name)
    info = read_json(model_dir / TRAIN_INFO_FILE)
    model = get_model_class(model_name).load(model_dir)
    classes = load_classes(layout.prepared)
    sets = {
        "val": load_split(layout.split, "val"),
        "test": load_split(layout.prepared, "test"),
    }
    report_dir = layout.report_dir(model_name)
    plot_dir = report_dir / PLOTS_DIR
    shutil.rmtree(plot_dir, ignore_errors=True)
    title = f"{model_name} on {params.data.dataset}"
    with tracking.resume_run(params.data.dataset, info["mlflow_run_id"], f"evaluate@{model_name}"):
        outputs = {name: model.predict_proba(images) for name, (images, _) in sets.items()}
        metrics = {name: classification_metrics(sets[name][1], outputs[name], len(classes))
                   for name in sets}
        images, labels = sets["test"]
        probabilities = outputs["test"]
        predicted = probabilities.argmax(axis=1)
        write_confusion(report_dir / "confusion.csv", labels, predicted, classes)
        write_json(report_dir / "per_class.json", per_class_metrics(labels, predicted, classes))
        write_json(report_dir / "metrics.json", metrics)
        plots.confusion_matrix_png(
            plot_dir / "confusion_matrix.png",
            confusion_counts(labels, predicted, len(classes)), classes, f"{title}: test set",
        )
        plots.misclassified_png(
            plot_dir / "misclassified.png", np.asarray(images), labels, probabilities, classes,
            title,
        )
        history = read_history(report_dir / "history.csv")
        if history:
            plots.learning_curves_png(plot_dir / "learning_curves.png", history, title)
        if params.data.dataset == "planar":  # 2-D points: show the decision boundary
            from nnlab.datasets import planar

            plots.decision_boundary_png(
                plot_dir / "decision_boundary.png",
                lambda points: model.predict_proba(planar.to_pixels(points)),
                planar.coordinates(np.asarray(images)), labels, classes, planar.LIMIT,
                f"{title}: decision boundary and test points",
            )
        # "test.accuracy" etc., as `dvc exp show` names them; the per-epoch history owns the
        # Keras-style names ("val_accuracy"), so the two never collide in one run.
        flat = {f"{split}.{key}": value for split, values in metrics.items()
                for key, value in values.items()}
        tracking.log_results(
            flat,
            [report_dir / name for name in ("metrics.json", "per_class.json", "confusion.csv")],
            folders={PLOTS_DIR: plot_dir},
        )
    return metrics


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv as rows of floats (empty if the model has no per-epoch history)."""
    if not path.is_file():
        return []
    with reading(path, "the training history"), \
            open(path, encoding="utf-8", newline="") as handle:
        return [{key: float(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]


# Column -> how summary.md shows it (summary.csv keeps the raw values).
SUMMARY_FORMATS = {
    "model": "{}",
    "val_accuracy": "{:.4f}",
    "test_accuracy": "{:.4f}",
    "test_f1_macro": "{:.4f}",
    "param_count": "{:,}",
    "training_seconds": "{:,.1f}",
    "samples_per_second": "{:,.0f}",
    "mlflow_run_id": "{}",
}
SUMMARY_COLUMNS = list(SUMMARY_FORMATS)


def report(models: list[str], layout: Layout) -> list[dict[str, object]]:
    """One row per model in reports/summary.csv and summary.md; summary.png compares them."""
    rows: list[dict[str, object]] = []
    for model_name in models:
        metrics = read_json(layout.report_dir(model_name) / "metrics.json")
        info = read_json(layout.model_dir(model_name) / TRAIN_INFO_FILE)
        rows.append(
            {
                "model": model_name,
                "val_accuracy": round(metrics["val"]["accuracy"], 4),
                "test_accuracy": round(metrics["test"]["accuracy"], 4),
                "test_f1_macro": round(metrics["test"]["f1_macro"], 4),
                "param_count": info["param_count"],
                "training_seconds": info["training_seconds"],
                "samples_per_second": info["samples_per_second"],
                "mlflow_run_id": info["mlflow_run_id"],
            }
        )
    write_csv(layout.reports / "summary.csv", SUMMARY_COLUMNS, rows)
    header = "| " + " | ".join(SUMMARY_COLUMNS) + " |"
    rule = "|---|" + "---:|" * (len(SUMMARY_COLUMNS) - 2) + "---|"
    lines = [
        "| " + " | ".join(SUMMARY_FORMATS[key].format(row[key]) for key in SUMMARY_COLUMNS) + " |"
        for row in rows
    ]
    best = max(rows, key=lambda row: float(row["val_accuracy"]))  # type: ignore[arg-type]
    text = "\n".join(
        [
            "# Model comparison",
            "",
            header,
            rule,
            *lines,
            "",
            f"Best by validation accuracy: **{best['model']}**. "
            "Test metrics are reported, never used to choose.",
            "",
        ]
    )
    write_text(layout.reports / "summary.md", text)
    from nnlab import plots  # late: matplotlib takes seconds to import

    plots.summary_png(layout.reports / "summary.png", rows)
    return rows

