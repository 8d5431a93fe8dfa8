"""The train stage: fit one model, log it to MLflow, write models/<model>/ and its
history.csv."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from nnlab import tracking
from nnlab.core.contract import load_classes, load_split
from nnlab.core.errors import Pruned
from nnlab.core.files import sha256, write_csv, write_json
from nnlab.core.layout import HISTORY_COLUMNS, TRAIN_INFO_FILE, Layout
from nnlab.core.schema import Params, flatten
from nnlab.models import mlflow_model
from nnlab.models.base import History, ImageClassifier, Split, get_model_class
from nnlab.search.link import TrialLink


def _digest(layout: Layout) -> str:
    """What the model was trained and validated on: a short hash of the split's arrays."""
    return sha256(*(layout.split / f"{name}_{kind}.npy" for name in ("train", "val")
                    for kind in ("images", "labels")))[:16]


def train(model_name: str, params: Params, layout: Layout) -> dict[str, object]:
    """Train one model, log it to MLflow, and write models/<model>/ and its history.csv.

    The model is written to a temporary folder and renamed into place only after training
    succeeded, so a failed run (e.g. a diverging loss) never leaves a model that looks valid.

    In a sweep's trial (NNLAB_TRIAL, nnlab/search/link.py) the run is nested under the
    study's parent run, and validation accuracy is reported to the study after each epoch. If
    the study's pruner stops the trial, models/<model>/ holds only a train_info.json that says
    so (no weights), the MLflow run ends KILLED, and the stage succeeds: DVC records the
    experiment as pruned.
    """
    tracking.check_server()  # a server that is down fails here, not after training
    link = TrialLink.from_env()
    model_params = params.model_params(model_name)
    train_set = load_split(layout.split, "train")
    val_set = load_split(layout.split, "val")
    classes = load_classes(layout.prepared)
    dataset = params.data.dataset
    tags = {**tracking.dvc_tags(f"train@{model_name}"), "model": model_name,
            "dataset": dataset, "dataset.digest": _digest(layout),
            **(link.mlflow_tags() if link else {})}
    run_params = {**flatten(model_params), "seed": params.seed, "dataset": dataset}
    model_dir = layout.model_dir(model_name)
    shutil.rmtree(model_dir.with_name(model_dir.name + ".partial"), ignore_errors=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    info: dict[str, object] = {"model": model_name, "classes": classes, "dataset": dataset,
                               # what `nnlab predict` needs to preprocess an image
                               "input_shape": [int(size) for size in train_set[0].shape[1:]]}
    rows: History = []
    report = link.epoch_reporter() if link else None

    def on_epoch(row: dict[str, float]) -> None:
        rows.append(row)
        if report is not None:
            report(row)

    try:
        with tracking.training_run(dataset, model_name, run_params, tags) as run_id:
            info["mlflow_run_id"] = run_id
            if link:
                link.record_run(run_id)
            model = get_model_class(model_name)(model_params, params.seed)
            start = time.perf_counter()
            history = model.fit(train_set, val_set, n_classes=len(classes), on_epoch=on_epoch)
            seconds = time.perf_counter() - start
            info.update(param_count=model.count_params(), training_seconds=round(seconds, 3),
                        samples_per_second=round(len(history) * len(train_set[1]) / seconds, 1),
                        epochs=len(history))
            history_path = _save(model, model_name, history, info, train_set, layout)
            tracking.log_results({"param_count": model.count_params(),
                                  "training_seconds": seconds}, [history_path])
    except Pruned as stop:
        write_csv(layout.report_dir(model_name) / "history.csv", _columns(rows), rows)
        info.update(pruned=True, epochs=stop.epoch, pruned_reason=str(stop))
        write_json(model_dir / TRAIN_INFO_FILE, info)
    return info


def _columns(history: History) -> list[str]:
    extra = [key for key in history[0] if key not in HISTORY_COLUMNS] if history else []
    return HISTORY_COLUMNS + extra


def _save(model: ImageClassifier, model_name: str, history: History, info: dict[str, object],
          train_set: Split, layout: Layout) -> Path:
    """Log the history and the model to the active run; write models/<model>/ (through a
    .partial folder renamed into place) and history.csv, whose path it returns."""
    tracking.log_history(history)
    history_path = layout.report_dir(model_name) / "history.csv"
    write_csv(history_path, _columns(history), history)
    model_dir = layout.model_dir(model_name)
    partial_dir = model_dir.with_name(model_dir.name + ".partial")
    try:
        model.save(partial_dir)
        info["mlflow_model_uri"] = mlflow_model.log_model(model, model_name, partial_dir,
                                                      train_set[0][:5])
        write_json(partial_dir / TRAIN_INFO_FILE, info)
        partial_dir.rename(model_dir)
    finally:
        shutil.rmtree(partial_dir, ignore_errors=True)
    return history_path
