"""The train stage: fit one model, log it to MLflow, write models/<model>/ and its
history.csv."""

from __future__ import annotations

import shutil
import time

from nnlab import tracking
from nnlab.data import load_classes, load_split
from nnlab.files import sha256, write_csv, write_json
from nnlab.models import get_model_class
from nnlab.params import Params, flatten
from nnlab.pipeline.layout import HISTORY_COLUMNS, TRAIN_INFO_FILE, Layout


def _digest(layout: Layout) -> str:
    """What the model was trained and validated on: a short hash of the split's arrays."""
    return sha256(*(layout.split / f"{name}_{kind}.npy" for name in ("train", "val")
                    for kind in ("images", "labels")))[:16]


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
    tags = {**tracking.dvc_tags(f"train@{model_name}"), "model": model_name,
            "dataset": dataset, "dataset.digest": _digest(layout)}
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
