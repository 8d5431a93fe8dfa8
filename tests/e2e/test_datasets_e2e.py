"""End to end on the non-default datasets: planar points under `dvc repro`, and an image folder
through the stage modules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stages import download, evaluate, prepare, split, train
from tests.support.e2e import make_project
from tests.support.e2e import ran_stages as _ran_stages
from tests.support.e2e import run as _run
from tests.support.helpers import make_image_folder

pytestmark = pytest.mark.slow


def _project(path: Path, data: dict[str, object]) -> Path:
    return make_project(path, {
        "data": data,
        # enough training for the 2-D flower to be learnt (about 0.8 accuracy; chance is 0.5)
        "numpy_dnn": {"epochs": 300, "hidden_layers": [32, 32], "learning_rate": 0.01,
                      "batch_size": 32, "dropout": 0.0, "early_stopping_patience": None},
        "keras_mlp": {"epochs": 1, "hidden_units": [16]},
        "cnn": {"epochs": 1, "dense_units": [16], "blocks": [{"filters": 4, "convs": 1}]},
        "logreg": {"max_iter": 200},
    })


# Every model's train/evaluate stages run under `dvc repro` on digits in test_pipeline_e2e,
# and every model learns 1x2 planar inputs in-process in test_models. Here each dataset goes
# end to end through one model (each stage is a new process that imports its libraries).


def test_planar_points_train_and_evaluate(tmp_path: Path) -> None:
    # numpy_dnn: two classes take its single-sigmoid-unit output end to end.
    project = _project(tmp_path / "project", {"dataset": "planar", "planar_samples": 200})
    targets = ["evaluate@numpy_dnn"]
    output = _run(["dvc", "repro", *targets], project)
    assert {"download", "prepare", "split", *targets} <= _ran_stages(output)
    assert json.loads((project / "data/prepared/classes.json").read_text()) == ["red", "blue"]
    images = np.load(project / "data/split/train_images.npy", allow_pickle=False)
    assert images.shape == (128, 1, 2, 1)  # 200 points - 40 test - 32 validation
    metrics = json.loads((project / "reports/numpy_dnn/metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.7 and metrics["val"]["accuracy"] >= 0.7, metrics
    # 2-D points get a decision-boundary plot on top of the usual ones
    plots = project / "reports/numpy_dnn/plots"
    assert sorted(path.name for path in plots.iterdir()) == [
        "confusion_matrix.png", "decision_boundary.png", "learning_curves.png",
        "misclassified.png"]
    assert not (project / "models/logreg").exists()  # only the targets' stages ran


def test_image_folder_with_bad_files_trains_and_reports_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    migrated_store: Path,
) -> None:
    # The stage modules in-process, in dvc.yaml's order: what this test checks is the
    # dataset's way through them, and planar above already goes through `dvc repro`.
    make_image_folder(tmp_path / "pets", per_class=10)
    project = _project(
        tmp_path / "project", {"dataset": "image_folder", "source": "../pets", "image_size": 16}
    )
    shutil.copyfile(migrated_store, project / "mlflow.db")
    monkeypatch.chdir(project)
    for name in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    for stage, argv in [(download, None), (prepare, None), (split, None),
                        (train, ["logreg"]), (evaluate, ["logreg"])]:
        stage.main(argv)
    captured = capsys.readouterr()
    output = captured.out
    assert "prepare: skipped 3 unreadable file(s); see data/prepared/skipped.txt" in output
    # ../pets is outside images/: DVC cannot watch it, and download says what to do.
    assert "is outside images/, which DVC does not watch" in captured.err
    assert "dvc repro -f download" in captured.err
    skipped = (project / "data/prepared/skipped.txt").read_text()
    assert "broken.jpg" in skipped and "notes.txt" in skipped and "bird/" in skipped
    classes = json.loads((project / "data/prepared/classes.json").read_text())
    assert classes == ["cat", "dog"]
    images = np.load(project / "data/prepared/train_images.npy", allow_pickle=False)
    assert images.shape == (16, 16, 16, 3)
    # The images are trivially separable (red cats, blue dogs): the baseline gets them right.
    metrics = json.loads((project / "reports/logreg/metrics.json").read_text())
    assert metrics["test"]["accuracy"] == 1.0
    per_class = json.loads((project / "reports/logreg/per_class.json").read_text())
    assert sorted(per_class) == ["cat", "dog"]


def test_an_image_folder_under_images_is_watched_by_dvc(tmp_path: Path) -> None:
    """Adding an image under images/ makes `download` out of date; listing it again adds it."""
    project = _project(tmp_path / "project", {"dataset": "image_folder",
                                              "source": "images/pets", "image_size": 8})
    make_image_folder(project / "images" / "pets", per_class=2)
    assert "download" in _ran_stages(_run(["dvc", "repro", "download"], project))
    assert "up to date" in _run(["dvc", "status", "download"], project)
    shutil.copyfile(project / "images/pets/cat/cat.0.png", project / "images/pets/cat/new.png")
    assert "modified:           images" in _run(["dvc", "status", "download"], project)
    output = _run(["dvc", "repro", "download"], project)
    assert "download" in _ran_stages(output) and "outside images/" not in output
    manifest = json.loads((project / "data/raw/manifest.json").read_text())
    assert "cat/new.png" in [entry["path"] for entry in manifest["files"]]
