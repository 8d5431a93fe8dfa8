"""`nnlab predict` on PNGs made here, against models trained by the real `train` step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnlab.arrays.contract import save_classes, save_split
from nnlab.core.layout import Layout
from nnlab.training import train as train_step
from tests.support.helpers import ROOT, make_images, project_params


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """numpy_dnn and logreg trained on 8x8 grey images of 2 classes: top or bottom half lit."""
    root = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_ROOT", str(root))  # the MLflow store goes under root
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        layout = Layout(root)
        save_split(layout.split, "train", *make_images(30, 2, seed=1))
        save_split(layout.split, "val", *make_images(8, 2, seed=2))
        save_classes(layout.prepared, ["top", "bottom"])
        params = project_params({"numpy_dnn": {"epochs": 20, "hidden_layers": [16]},
                           "logreg": {"max_iter": 200}})
        for model in ("numpy_dnn", "logreg"):
            train_step.train(model, params, layout)
    return root


def _png(path: Path, top_bright: bool, mode: str = "RGB") -> Path:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    if top_bright:
        pixels[:16] = 230
    else:
        pixels[16:] = 230
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def _nnlab(args: list[str], cwd: Path, extra: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}
    return subprocess.run([sys.executable, "-m", "nnlab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("model", ["numpy_dnn", "logreg"])
def test_predict_prints_the_top_classes(model: str, trained: Path) -> None:
    top = _png(trained / "top.png", top_bright=True)
    bottom = _png(trained / "bottom.png", top_bright=False, mode="L")
    result = _nnlab(["predict", "--model", model, str(top), str(bottom)], trained)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"{top}: top ") and lines[1].startswith(f"{bottom}: bottom ")
    as_json = _nnlab(["predict", "--model", model, "--json", str(top)], trained)
    (entry,) = json.loads(as_json.stdout)
    assert entry["image"] == str(top) and [item["class"] for item in entry["top"]] == [
        "top", "bottom"
    ]
    assert sum(item["probability"] for item in entry["top"]) == pytest.approx(1.0, abs=1e-5)


def test_predict_errors_are_one_line_with_exit_2(trained: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    cases = {
        str(tmp_path / "missing.png"): "missing.png: no such file",
        str(tmp_path / "notes.png"): "notes.png: not a readable image",
    }
    for path, message in cases.items():
        result = _nnlab(["predict", "--model", "logreg", path], trained)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1
        assert lines[0].startswith("nnlab predict: error: ") and message in lines[0]
    untrained = _nnlab(["predict", "--model", "cnn", str(_png(tmp_path / "a.png", True))],
                       trained)
    assert untrained.returncode == 2
    assert "no trained cnn model; run `dvc repro` first" in untrained.stderr


def test_a_folder_is_predicted_image_by_image_with_skips_reported(
    trained: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    top = _png(folder / "a_top.png", top_bright=True)
    bottom = _png(folder / "more" / "b_bottom.png", top_bright=False)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_text("left out")
    result = _nnlab(["predict", "--model", "numpy_dnn", str(folder)], trained)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(top), str(bottom)]
    assert lines[0].startswith(f"{top}: top ") and lines[1].startswith(f"{bottom}: bottom ")
    assert result.stderr.strip().splitlines() == [
        f"nnlab predict: skipped {folder / 'notes.txt'}: not a readable image "
        f"(cannot identify image file '{folder / 'notes.txt'}')",
        "nnlab predict: 2 image(s) predicted, 1 file(s) skipped",
    ]
    (folder / "a_top.png").unlink()
    (folder / "more" / "b_bottom.png").unlink()
    empty = _nnlab(["predict", "--model", "numpy_dnn", str(folder)], trained)
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == [
        f"nnlab predict: error: {folder}: no readable image in the folder "
        "(1 other file(s) skipped)"]


def test_plot_draws_each_image_beside_its_probabilities(trained: Path) -> None:
    files = [str(_png(trained / f"p{i}.png", top_bright=i % 2 == 0)) for i in range(3)]
    out = trained / "plot" / "bars.png"
    out.parent.mkdir()
    result = _nnlab(["predict", "--model", "numpy_dnn", *files, "--plot", str(out)], trained)
    assert result.returncode == 0, result.stderr
    assert f"drew 3 image(s) and their probabilities in {out}" in result.stderr
    with Image.open(out) as image:
        # 3 rows of 2 classes each (nnlab/evaluation/bars.py: sizes in inches, 100 DPI)
        assert image.size == (900, int((3 * 1.6 + 0.8) * 100))  # rows of 1.6 inches at least
    # A folder that is not there, or not writable: the predictions still print, then one
    # line says why there is no plot (exit 1); no folder is made.
    for where in (trained / "no-such-folder" / "bars.png", Path("/proc/bars.png")):
        failed = _nnlab(["predict", "--model", "numpy_dnn", *files, "--plot", str(where)],
                        trained)
        assert failed.returncode == 1, failed.stderr
        assert [line.split(":")[0] for line in failed.stdout.splitlines()] == files
        (line,) = failed.stderr.strip().splitlines()
        assert line.startswith(f"nnlab predict: error: {where}: the plot was not written ("), line
        assert line.endswith("); the predictions above are complete"), line
    assert not (trained / "no-such-folder").exists()


@pytest.mark.slow  # three nnlab processes with onnxruntime: `make test` only
def test_export_reads_a_numpy_run_from_mlflow_and_fails_in_one_line(trained: Path) -> None:
    """`nnlab export --run` for a model logged as portable.py; an unknown run id, and a write
    over the file-size limit (`ulimit -f`), each one line, nothing half-written."""
    import resource

    info = json.loads((trained / "models/numpy_dnn/train_info.json").read_text())
    # The fixture's store, whatever another test of this worker left in the environment.
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{trained / 'mlflow.db'}",
             "DVC_ROOT": str(trained)}
    done = _nnlab(["export", "--run", info["mlflow_run_id"], "--no-log", "--output",
                   str(trained / "exported" / "numpy_dnn.onnx")], trained, store)
    assert done.returncode == 0, done.stderr
    assert "onnxruntime matches the model within" in done.stdout, done.stdout
    unknown = _nnlab(["export", "--run", "0" * 32], trained, store)
    assert unknown.returncode == 2
    (line,) = unknown.stderr.strip().splitlines()
    assert line.startswith(f"nnlab export: error: no MLflow run {'0' * 32} in sqlite:"), line
    limited = trained / "limited"
    limited.mkdir()
    small = subprocess.run(
        [sys.executable, "-m", "nnlab.cli", "export", "--model", "numpy_dnn", "--no-log",
         "--output", str(limited / "numpy_dnn.onnx")], cwd=trained, capture_output=True,
        text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **store},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)))
    assert small.returncode == 2, small.stderr
    (line,) = small.stderr.strip().splitlines()
    assert "file too large" in line and "nothing half-written was kept" in line, line
    assert list(limited.iterdir()) == []
