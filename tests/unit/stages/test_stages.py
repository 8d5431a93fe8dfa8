"""Stage modules: user errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from nnlab.core.files import read_json, write_json
from nnlab.core.layout import TRAIN_INFO_FILE, Layout
from nnlab.evaluation import summary as report_step
from nnlab.evaluation.outcomes import write_outcomes
from nnlab.evaluation.uncertainty import headline_intervals
from tests.support.helpers import ROOT, raw_params
from tests.support.loopback import closed_port_url


def _stage(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )


def _params(folder: Path, changes: dict[str, Any]) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(raw_params(changes), sort_keys=False))


def test_bad_param_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _params(tmp_path, {"data": {"val_fraction": -1}})
    result = _stage(["stages.split"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "split: error: data.val_fraction=-1: Input should be greater than 0"
    ]


def test_a_model_sections_typo_is_refused_by_that_models_stages_only(tmp_path: Path) -> None:
    _params(tmp_path, {"keras_mlp": {"learnig_rate": 0.01}})
    refused = _stage(["stages.train", "keras_mlp"], tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "train@keras_mlp: error: keras_mlp.learnig_rate: unknown key (misspelled?); remove it "
        "or fix its name"]
    other = _stage(["stages.train", "numpy_dnn"], tmp_path)  # past its params: no data yet
    assert other.returncode == 2 and "data/split/train_images.npy: missing" in other.stderr
    _params(tmp_path, {"resnet": {"depth": 50}})
    unknown = _stage(["stages.split"], tmp_path)
    assert unknown.returncode == 2 and "resnet: unknown section (misspelled?)" in unknown.stderr


def test_missing_inputs_name_the_file_and_the_fix(tmp_path: Path) -> None:
    _params(tmp_path, {"seed": 1})
    result = _stage(["stages.train", "numpy_dnn"], tmp_path)
    assert result.returncode == 2
    assert "data/split/train_images.npy: missing; run `dvc repro`" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


def test_download_with_no_reachable_mirror_is_one_line_with_the_offline_fix(
    tmp_path: Path,
) -> None:
    dead = closed_port_url()
    _params(tmp_path, {"data": {"dataset": "mnist", "source": dead}})
    result = _stage(["stages.download"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("download: error: could not download train-images-idx3-ubyte.gz")
    assert f"{dead}/train-images-idx3-ubyte.gz" in error and "data.source=<folder>" in error
    assert not (tmp_path / "data" / "raw").exists()


def test_unknown_model_argument(tmp_path: Path) -> None:
    result = _stage(["stages.train", "resnet"], tmp_path)
    assert result.returncode == 2 and "invalid choice: 'resnet'" in result.stderr


def _two_models(layout: Layout) -> None:
    """numpy_dnn (accuracy 0.9) and logreg (0.95) on the same 100 validation and test
    images, evaluated, as the report reads them."""
    labels = np.arange(100) % 10
    for index, model in enumerate(["numpy_dnn", "logreg"]):
        right = np.arange(100) < 90 + 5 * index
        predicted = np.where(right, labels, (labels + 1) % 10)
        write_outcomes(layout.report_dir(model) / "predictions.csv",
                       {split: (labels, np.eye(10)[predicted]) for split in ("val", "test")})
        metrics = {split: {"accuracy": 0.9 + index / 20, "f1_macro": 0.8, "loss": 0.3,
                           **headline_intervals(labels, predicted, 10)}
                   for split in ("val", "test")}
        write_json(layout.report_dir(model) / "metrics.json", metrics)
        write_json(
            layout.model_dir(model) / TRAIN_INFO_FILE,
            {"param_count": 1234, "training_seconds": 2.25, "samples_per_second": 99.6,
             "mlflow_run_id": f"run{index}"},
        )


def test_report_table(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    _two_models(layout)
    rows = report_step.report(["numpy_dnn", "logreg"], layout)
    assert [row["model"] for row in rows] == ["numpy_dnn", "logreg"]
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert ("| logreg | 0.9500 [0.888, 0.978] | 0.9500 [0.888, 0.978] | 0.8000 [" in summary
            and "| 1,234 | 2.2 | 100 | run1 |" in summary)
    # 5 images only logreg gets right, none the other way: p = 0.0625, a tie
    assert "Best by validation accuracy: **logreg** (0.9500), but it is a **tie**" in summary
    assert "| numpy_dnn | logreg | 0 | 5 | 0.062 | 0.062 | no measurable difference |" in summary
    csv_lines = (tmp_path / "reports" / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("model,val_accuracy,val_accuracy_low,val_accuracy_high")
    found = read_json(layout.reports / "summary.json")
    assert found["best_by_validation"]["tied_with"] == ["numpy_dnn"]
    assert found["test_pairs"][0]["only_second"] == 5
    # an evaluation from before the intervals: one line saying how to redo it
    write_json(layout.report_dir("logreg") / "metrics.json",
               {split: {"accuracy": 0.9, "f1_macro": 0.8} for split in ("val", "test")})
    with pytest.raises(ValueError, match=r"dvc repro -f evaluate@logreg"):
        report_step.report(["numpy_dnn", "logreg"], layout)


def test_report_shows_the_baselines_and_which_models_beat_them(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    _two_models(layout)
    write_json(layout.reports / "baselines.json", {"dataset": "digits", "rows": [
        {"model": "svc", "description": "SVC", "val_accuracy": 0.92, "test_accuracy": 0.91,
         "training_seconds": 0.25, "train_samples": 1150},
        {"model": "mlp", "description": "MLP", "val_accuracy": 0.94, "test_accuracy": 0.93,
         "training_seconds": 3.5, "train_samples": 1150}]})
    report_step.report(["numpy_dnn", "logreg"], layout)
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert "| SVC | 0.9200 | 0.9100 | 0.2 | 1,150 |" in summary
    assert ("Above the best baseline (mlp, validation accuracy 0.9400): logreg." in summary)
    found = read_json(layout.reports / "baselines.json")
    found["rows"][1]["val_accuracy"] = 0.95  # logreg's: a tie
    write_json(layout.reports / "baselines.json", found)
    report_step.report(["numpy_dnn", "logreg"], layout)
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert ("Above the best baseline (mlp, validation accuracy 0.9500): none of our models; "
            "level with it: logreg." in summary)


def test_baselines_train_on_the_split_and_score_validation_and_test() -> None:
    from typing import get_args

    from nnlab.evaluation.baselines import BASELINES, BaselineName, fit_and_score, subsample

    assert tuple(BASELINES) == get_args(BaselineName)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = (rng.integers(0, 60, (60, 4, 4, 1)) + labels[:, None, None, None] * 90)
    split = (images.astype(np.uint8), labels.astype(np.int64))
    small = subsample(split, 30, seed=0)
    assert len(small[1]) == 30 and subsample(split, 100, seed=0) is split
    for name in BASELINES:
        row = fit_and_score(name, small, {"val": split, "test": split}, seed=0)
        assert row["train_samples"] == 30 and row["test_accuracy"] > 0.9, row


def test_report_without_metrics_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"reports/cnn/metrics\.json: missing"):
        report_step.report(["cnn"], Layout(tmp_path))


# A stage whose body makes numba compile the Adam rule (or load it from numba's cache). With
# "inject", SIGTERM arrives while Python runs inside llvmlite's ctypes callback, where numba
# hands over the compiled code: the moment a fresh-clone `make test` once hit by chance. The
# signal, the handler and the compile are real; the hook only picks the moment.
_STOP_MID_COMPILE = """
import os, signal, sys
from llvmlite.binding import executionengine

set_object_cache = executionengine.ExecutionEngine.set_object_cache
sent = []

def signalled(hook):
    def inside_the_callback(*args):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
            sum(range(10_000))  # Python bytecodes: the handler runs here, in the callback
        return hook(*args)
    return inside_the_callback if hook is not None and sys.argv[1] == "inject" else hook

executionengine.ExecutionEngine.set_object_cache = lambda self, notify=None, getbuffer=None: (
    set_object_cache(self, signalled(notify), signalled(getbuffer)))

import numpy as np
from nnlab.models.numpy.optimizers import make_optimizer
from stages._common import run

def body(params):
    adam = make_optimizer("adam", 0.001, momentum=0.9, beta1=0.9, beta2=0.999, epsilon=1e-7)
    weights = {"W": np.ones((64, 64), np.float32)}
    adam.update(weights, {"W": np.ones_like(weights["W"])})  # the first call compiles
    print("compiled" if sent or sys.argv[1] != "inject" else "no callback ran", flush=True)

run("compile", body)
"""


@pytest.mark.parametrize("cache", ["empty", "warm"])
def test_a_stop_during_numbas_first_compile_is_one_line(tmp_path: Path, cache: str) -> None:
    """An exception raised in a ctypes callback is printed and dropped, so a stop there would
    be lost and print a traceback; the stage defers it to the end of the compile
    (nnlab/core/stops.py) and stops with its usual line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    script = [sys.executable, "-c", _STOP_MID_COMPILE]
    if cache == "warm":  # numba loads the compiled rule from its cache, through a callback too
        warm = subprocess.run([*script, "none"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert warm.returncode == 0 and warm.stdout == "compiled\n", warm.stderr
    result = subprocess.run([*script, "inject"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 128 + signal.SIGTERM, result.stdout + result.stderr
    assert result.stdout == ""  # stopped as the compile ended, before the body went on
    assert result.stderr.strip().splitlines() == [
        "compile: stopped by SIGTERM; partial outputs removed; `dvc repro` starts it again"]


def test_a_stop_says_go_on_only_when_this_run_left_a_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from stages import _common

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    folder = tmp_path / ".nnlab" / "checkpoints"
    folder.mkdir(parents=True)
    old = folder / "train@numpy_dnn.aaaa.npz"
    old.write_bytes(b"")
    os.utime(old, (1.0, 1.0))  # another key's, from long ago
    started = time.time()
    assert not _common._checkpointed("train@numpy_dnn", started)
    assert not _common._checkpointed("train@logreg", started)  # logreg never checkpoints
    (folder / "train@numpy_dnn.bbbb.npz").write_bytes(b"")
    assert _common._checkpointed("train@numpy_dnn", started)
