"""Where the pipeline's files live, as dvc.yaml declares them, and the names every stage
shares (history columns, the train-info file, the plots folder); and where nnlab keeps what
it compiled, outside every project (`user_cache`)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nnlab.core.catalog import MODEL_NAMES

# Every model's history.csv has these columns; a model may add more (numpy_dnn: learning_rate).
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
TRAIN_INFO_FILE = "train_info.json"
CLASSES_FILE = "classes.json"  # data/prepared/classes.json: the class names
SKIPPED_FILE = "skipped.txt"
PLOTS_DIR = "plots"  # reports/<model>/plots/*.png
BASELINES_FILE = "baselines.json"  # reports/baselines.json: scikit-learn's baselines
# under the repository root (nnlab/training/checkpoints.py)
CHECKPOINTS_DIR = Path(".nnlab") / "checkpoints"


@dataclass(frozen=True)
class Layout:
    """Where the pipeline's files live: the one declaration of dvc.yaml's data deps and outs
    (tests/unit/project/test_architecture.py holds dvc.yaml to it)."""

    root: Path = Path(".")
    models: tuple[str, ...] = MODEL_NAMES  # the report's rows

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

    def inputs(self, stage: str, model: str | None = None) -> list[Path]:
        """What a stage reads besides params.yaml and code: dvc.yaml's data deps (the
        architecture test holds dvc.yaml to this), and what a train checkpoint is keyed on."""
        prepared, split = self.prepared, self.split
        test_set = [prepared / "test_images.npy", prepared / "test_labels.npy"]
        if stage == "train" and model:
            return [split, prepared / CLASSES_FILE]
        if stage == "evaluate" and model:
            return [self.model_dir(model), split / "val_images.npy", split / "val_labels.npy",
                    *test_set, prepared / CLASSES_FILE, self.report_dir(model) / "history.csv",
                    self.reports / "data"]
        if stage == "report":
            return [self.reports / BASELINES_FILE, *(
                folder / name for kind, name in (("report", "metrics.json"),
                                                 ("model", TRAIN_INFO_FILE),
                                                 ("report", "predictions.csv"))
                for folder in (self.report_dir(model) if kind == "report"
                               else self.model_dir(model) for model in self.models))]
        return {
            "download": [self.root / "images"],
            "prepare": [self.raw],
            "split": [prepared / "train_images.npy", prepared / "train_labels.npy"],
            "data_report": [split, prepared / "test_labels.npy", prepared / CLASSES_FILE],
            "baselines": [*(split / f"{kind}_{part}.npy" for kind in ("train", "val")
                            for part in ("images", "labels")), *test_set],
        }.get(stage, [])

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
                    ("metrics.json", "predictions.csv", "per_class.json", "confusion.csv",
                     PLOTS_DIR)]
        return {
            "prepare": [self.prepared],
            "split": [self.split],
            "data_report": [self.reports / "data"],
            "report": [self.reports / f"summary.{kind}" for kind in ("md", "csv", "json", "png")],
            "baselines": [self.reports / BASELINES_FILE],
        }.get(stage, [])


def user_cache(name: str) -> Path:
    """The folder (not created) for `name` among what nnlab compiled, for every copy of every
    project of this user: $NNLAB_CACHE_DIR/<name>, else $XDG_CACHE_HOME/nnlab/<name>, else
    ~/.cache/nnlab/<name>. numba's loops of the NumPy networks
    (nnlab/models/numpy/kernel_cache.py) and XLA's steps on Keras's JAX backend
    (nnlab/models/keras/backend.py) live there, so that a new workspace (a sweep trial, a
    queued experiment, a clone) or a new stage process loads them instead of compiling them
    again. Deleting it costs the next run its compile time only."""
    if os.environ.get("NNLAB_CACHE_DIR"):
        return Path(os.environ["NNLAB_CACHE_DIR"]) / name
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nnlab" / name


def writable(folder: Path) -> bool:
    """Make `folder`; whether this process can write in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True
