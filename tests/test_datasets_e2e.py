"""End to end on the non-default datasets: `dvc repro` on planar points and an image folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT
from tests.test_datasets import make_image_folder
from tests.test_pipeline_e2e import COPY_IGNORE, _ran_stages, _run

pytestmark = pytest.mark.slow


def _project(path: Path, data: dict[str, object], numpy_epochs: int = 3) -> Path:
    shutil.copytree(ROOT, path, ignore=COPY_IGNORE)
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["data"].update(data)
    params["numpy_dnn"].update(epochs=numpy_epochs, hidden_layers=[16])
    params["keras_mlp"].update(epochs=1, hidden_units=[16])
    params["cnn"].update(epochs=1, dense_units=[16], blocks=[{"filters": 4, "convs": 1}])
    params["logreg"]["max_iter"] = 200
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (path / "dvc.lock").unlink(missing_ok=True)
    _run(["git", "init", "-q"], path)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], path)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], path)
    return path


def test_planar_points_train_and_evaluate(tmp_path: Path) -> None:
    # The Keras models' train/evaluate stages are covered on digits by test_pipeline_e2e, and
    # on 1x2 planar inputs in-process by test_models; here the planar data goes end to end.
    project = _project(tmp_path / "project", {"dataset": "planar", "planar_samples": 200})
    targets = ["evaluate@numpy_dnn", "evaluate@logreg"]
    output = _run(["dvc", "repro", *targets], project)
    assert {"download", "prepare", "split", *targets} <= _ran_stages(output)
    assert json.loads((project / "data/prepared/classes.json").read_text()) == ["red", "blue"]
    images = np.load(project / "data/split/train_images.npy", allow_pickle=False)
    assert images.shape == (128, 1, 2, 1)  # 200 points - 40 test - 32 validation
    for model in ("numpy_dnn", "logreg"):
        metrics = json.loads((project / "reports" / model / "metrics.json").read_text())
        assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and metrics["test"]["loss"] > 0
        # 2-D points get a decision-boundary plot on top of the usual ones
        assert (project / "reports" / model / "plots" / "decision_boundary.png").is_file()


def test_image_folder_with_bad_files_trains_and_reports_skips(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "pets", per_class=10)
    project = _project(
        tmp_path / "project",
        {"dataset": "image_folder", "source": "../pets", "image_size": 16},
        numpy_epochs=20,
    )
    targets = ["evaluate@numpy_dnn", "evaluate@logreg"]
    output = _run(["dvc", "repro", *targets], project)
    assert "prepare: skipped 3 unreadable file(s); see data/prepared/skipped.txt" in output
    assert set(targets) <= _ran_stages(output)
    skipped = (project / "data/prepared/skipped.txt").read_text()
    assert "broken.jpg" in skipped and "notes.txt" in skipped and "bird/" in skipped
    classes = json.loads((project / "data/prepared/classes.json").read_text())
    assert classes == ["cat", "dog"]
    images = np.load(project / "data/prepared/train_images.npy", allow_pickle=False)
    assert images.shape == (16, 16, 16, 3)
    # The images are trivially separable (red cats, blue dogs): both models get them right.
    for model in ("numpy_dnn", "logreg"):
        metrics = json.loads((project / "reports" / model / "metrics.json").read_text())
        assert metrics["test"]["accuracy"] == 1.0
