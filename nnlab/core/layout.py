"""Where the pipeline's files live, as dvc.yaml declares them, and the names every stage
shares (history columns, the train-info file, the plots folder); and where nnlab keeps what
it compiled, outside every project (`user_cache`)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Every model's history.csv has these columns; a model may add more (numpy_dnn: learning_rate).
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
TRAIN_INFO_FILE = "train_info.json"
SKIPPED_FILE = "skipped.txt"
PLOTS_DIR = "plots"  # reports/<model>/plots/*.png
BASELINES_FILE = "baselines.json"  # reports/baselines.json: scikit-learn's baselines
# under the repository root (nnlab/training/checkpoints.py)
CHECKPOINTS_DIR = Path(".nnlab") / "checkpoints"


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
