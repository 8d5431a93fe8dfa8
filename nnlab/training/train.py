"""The train stage: fit one model (live, resumable), log it to MLflow, write models/<model>/
and its history.csv."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from nnlab.arrays.contract import load_classes, load_split
from nnlab.core.errors import USER_ERRORS, ProcessesError, Pruned, TrackingServerError
from nnlab.core.files import sha256, write_csv, write_json
from nnlab.core.layout import HISTORY_COLUMNS, TRAIN_INFO_FILE, Layout
from nnlab.core.schema import Params, flatten
from nnlab.models import logged_model
from nnlab.models.base import EpochHook, History, ImageClassifier, Split, new_model
from nnlab.models.progress import EpochProgress
from nnlab.tracking import mlflow_runs
from nnlab.training.checkpoints import RESTART_HINT, StageCheckpoint, fingerprint
from nnlab.training.live_metrics import LiveMetrics, Pacer
from nnlab.training.roll_call import RollCall, Team
from nnlab.training.sweep_hook import Trial


def _digest(layout: Layout, names: tuple[str, ...] = ("train", "val")) -> str:
    """What the model was trained and validated on: a short hash of the split's arrays."""
    return sha256(*(layout.split / f"{name}_{kind}.npy" for name in names
                    for kind in ("images", "labels")))[:16]


def train(model_name: str, params: Params, layout: Layout, trial: Trial | None = None
          ) -> dict[str, object]:
    """Train one model, log it to MLflow, and write models/<model>/ and its history.csv.

    Live (each epoch goes out as it ends: `_Epochs`) and resumable
    (nnlab/training/checkpoints.py: a stage stopped in any way goes on from its last
    checkpointed epoch, in the same MLflow run, and ends as an unstopped run would). The model
    goes through a .partial folder renamed into place, so a failed run never leaves a model
    that looks valid. A sweep's `trial` (handed in by the stage: nnlab/training/sweep_hook.py)
    tags the run, nesting it under the study's, and hears of each epoch; a pruned trial
    leaves only a train_info.json saying so, and its run ends KILLED.
    """
    mlflow_runs.check_server()  # a server that is down fails here, not after training
    data = (load_split(layout.split, "train"), load_split(layout.split, "val"),
            load_classes(layout.prepared))
    checkpoint = StageCheckpoint.for_stage(model_name, params)
    model_params = params.model_params(model_name)
    processes = getattr(model_params, "processes", 1)
    if processes == 1:
        return _train(model_name, params, layout, trial, data, checkpoint, Team())
    # Several processes: this stage is process 0; it waits for the others (`nnlab join`),
    # hands them the checkpoint, and refuses latecomers while it trains.
    with RollCall(model_name, model_params.coordinator, processes,
                  fingerprint(model_name, params), model_params.join_timeout,
                  checkpoint.path.read_bytes() if checkpoint.saved() else b"") as call:
        return _train(model_name, params, layout, trial, data, checkpoint, call.wait())


def _train(model_name: str, params: Params, layout: Layout, trial: Trial | None,
           data: tuple[Split, Split, list[str]], checkpoint: StageCheckpoint, team: Team
           ) -> dict[str, object]:
    model_params = params.model_params(model_name)
    train_set, val_set, classes = data
    dataset = params.data.dataset
    tags = {**mlflow_runs.dvc_tags(f"train@{model_name}"), "model": model_name, "dataset": dataset,
            "dataset.digest": _digest(layout), **(trial.mlflow_tags() if trial else {})}
    seed = params.model_seed(model_name)  # the model's own, else the top-level one
    run_params = {**flatten(model_params), "seed": seed, "dataset": dataset}
    model_dir = layout.model_dir(model_name)
    _clear(model_dir)
    info = _info(model_name, classes, dataset, train_set)
    epochs = _Epochs(model_name, checkpoint, layout.report_dir(model_name) / "history.csv",
                     getattr(model_params, "epochs", None))
    try:
        # A trial's retry is a new trial: its own run, given the epochs the checkpoint has.
        resume = None if trial else checkpoint.extra.get("mlflow_run_id")
        with mlflow_runs.training_run(dataset, mlflow_runs.run_name(model_name), run_params,
                                      tags, resume=resume) as run_id:
            info["mlflow_run_id"] = checkpoint.extra["mlflow_run_id"] = run_id
            mlflow_runs.log_datasets(dataset, {
                "training": (*train_set, _digest(layout, ("train",))),
                "validation": (*val_set, _digest(layout, ("val",)))})
            if trial:
                trial.record_run(run_id)
            epochs.start(run_id, trial.epoch_reporter() if trial else None)
            model = _model(model_name, model_params, seed, info, team)
            checkpoint.start_clock()
            try:
                history = model.fit(train_set, val_set, n_classes=len(classes),
                                    on_epoch=epochs, checkpoint=checkpoint)
            finally:
                epochs.close()
            _finish(model, model_name, history, info, checkpoint.seconds, epochs, train_set,
                    layout)
    except Pruned as stop:
        checkpoint.remove()
        epochs.write()
        info.update(pruned=True, epochs=stop.epoch, pruned_reason=str(stop))
        write_json(model_dir / TRAIN_INFO_FILE, info)
        return info
    except USER_ERRORS as error:  # a rerun meets them again; a server that is down may be
        # back, and a lost process may join again
        if not isinstance(error, TrackingServerError | ProcessesError):
            checkpoint.remove()
        raise
    checkpoint.remove()
    return info


def _clear(model_dir: Path) -> None:
    for folder in (model_dir.with_name(model_dir.name + ".partial"), model_dir):
        shutil.rmtree(folder, ignore_errors=True)


def _model(model_name: str, model_params: Any, seed: int, info: dict[str, object],
           team: Team) -> ImageClassifier:
    """The untrained model, this process's environment set first (Keras's backend, read as
    Keras is imported); where it trains goes to the console, the run's tags and
    train_info.json (with the environment, which evaluate and predict load it with), with
    every process's host when several train it."""
    environment = model_params.environment()
    os.environ.update(environment)
    model = new_model(model_name, model_params, seed)
    runtime = model.runtime() | ({"hosts": team.describe()} if len(team.hosts) > 1 else {})
    info.update(runtime, **({"environment": environment} if environment else {}))
    mlflow_runs.set_tags({f"nnlab.{key}": value for key, value in runtime.items()})
    print(f"train@{model_name}: training on {runtime['device']} ({runtime['backend']})",
          file=sys.stderr)
    return model


def _finish(model: ImageClassifier, model_name: str, history: History, info: dict[str, object],
            seconds: float, epochs: _Epochs, train_set: Split, layout: Layout) -> None:
    """A trained model: every epoch in its run, the model logged and saved, its results."""
    info.update(param_count=model.count_params(), training_seconds=round(seconds, 3),
                samples_per_second=round(len(history) * len(train_set[1]) / seconds, 1),
                epochs=len(history), trained_on=model.trained_on(), **epochs.resumed)
    with mlflow_runs.server_errors("the trained model is kept in its checkpoint, and is "
                                   "logged without retraining"):
        epochs.complete(history)
        mlflow_runs.set_tags({"nnlab.trained_on": str(info["trained_on"])})
        _save(model, model_name, info, train_set, layout)
        mlflow_runs.log_results({"param_count": model.count_params(),
                                 "training_seconds": seconds}, [epochs.history_path])


def _info(model_name: str, classes: list[str], dataset: str, train_set: Split
          ) -> dict[str, object]:
    """train_info.json's start: what `nnlab predict` needs to preprocess an image."""
    return {"model": model_name, "classes": classes, "dataset": dataset,
            "input_shape": [int(size) for size in train_set[0].shape[1:]]}


class _Epochs:
    """Where each finished epoch of a training goes (an `on_epoch` hook): the MLflow run
    (live), history.csv (rewritten; epochs shorter than live.SEND_EVERY together, as the
    metrics), the console (models/progress.py) and, in a sweep's trial, the study's pruner. It
    starts with the epochs a checkpoint brings back."""

    def __init__(self, model_name: str, checkpoint: StageCheckpoint, history_path: Path,
                 epochs: int | None) -> None:
        saved = checkpoint.saved()
        self.rows: History = [dict(row) for row in saved[1].get("rows", [])] if saved else []
        self.resumed = {"resumed_after_epoch": checkpoint.epoch} if saved else {}
        if saved:
            print(f"train@{model_name}: resuming after epoch {checkpoint.epoch} from "
                  f"{checkpoint.path.relative_to(checkpoint.folder.parents[1])} "
                  f"({RESTART_HINT})", file=sys.stderr, flush=True)
        self.history_path = history_path
        self.progress = EpochProgress(f"train@{model_name}", epochs, len(self.rows)) \
            if epochs else None
        self.live: LiveMetrics | None = None
        self.report: EpochHook | None = None
        self.pacer = Pacer()

    def start(self, run_id: str, report: EpochHook | None) -> None:
        self.live, self.report = LiveMetrics(run_id), report
        if self.progress is not None:
            self.progress.restart_clock()
        if report is not None:
            for row in self.rows:  # to the pruner, as before
                report(row)

    def __call__(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if self.live is not None:
            self.live.log(row)
        if self.pacer.due():  # as often as the metrics go out; complete() writes the last
            self.write()
        if self.progress is not None:
            self.progress.update(row)
        if self.report is not None:
            self.report(row)

    def write(self, history: History | None = None) -> None:
        rows = self.rows if history is None else history
        write_csv(self.history_path, _columns(rows), rows)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def complete(self, history: History) -> None:
        """Training ended: every epoch in the run, exactly once; history.csv as returned."""
        if self.live is not None:
            self.live.complete(history)
        self.write(history)


def _columns(history: History) -> list[str]:
    extra = [key for key in history[0] if key not in HISTORY_COLUMNS] if history else []
    return HISTORY_COLUMNS + extra


def _save(model: ImageClassifier, model_name: str, info: dict[str, object],
          train_set: Split, layout: Layout) -> None:
    """Log the model to the active run; write models/<model>/ (through a .partial folder
    renamed into place)."""
    model_dir = layout.model_dir(model_name)
    partial_dir = model_dir.with_name(model_dir.name + ".partial")
    try:
        model.save(partial_dir)
        metadata = {key: info[key] for key in ("model", "classes", "dataset", "input_shape")}
        info["mlflow_model_uri"] = logged_model.log_model(model, model_name, partial_dir,
                                                          train_set[0][:5], metadata)
        write_json(partial_dir / TRAIN_INFO_FILE, info)
        partial_dir.rename(model_dir)
    finally:
        shutil.rmtree(partial_dir, ignore_errors=True)
