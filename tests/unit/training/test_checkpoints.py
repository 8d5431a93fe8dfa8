"""Checkpoints of the train stages: keyed by exactly what the stage trains on, never used for
anything else; a fit stopped after any epoch goes on bit for bit. Also the console format of
a training and the filter that keeps TensorFlow's C++ banners out of it."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnlab.core.errors import Interrupted
from nnlab.models.base import new_model
from nnlab.models.progress import EpochProgress
from nnlab.training import stage_code
from nnlab.training.checkpoints import (
    FOLDER,
    RESTART_VARIABLE,
    StageCheckpoint,
    stage_deps,
    stage_key,
)
from tests.support.helpers import make_images, project_params

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project tree with the stage's deps: the code (whose copy is the code that runs) and
    a split."""
    for name in ("nnlab", "stages"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stage_code, "CODE_ROOT", tmp_path)
    (tmp_path / "data/split").mkdir(parents=True)
    (tmp_path / "data/prepared").mkdir(parents=True)
    np.save(tmp_path / "data/split/train_images.npy", np.zeros((4, 8, 8, 1), np.uint8))
    (tmp_path / "data/prepared/classes.json").write_text('["0", "1"]')
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def meta(epoch: int, **more: object) -> dict[str, object]:
    """What a model saves after `epoch` epochs: one history row per epoch."""
    return {"epoch": epoch, "rows": [{"epoch": n, "loss": 1 / n} for n in range(1, epoch + 1)],
            **more}


def test_the_key_changes_with_params_seed_data_and_code_and_nothing_else(repo: Path) -> None:
    params = project_params()
    key = stage_key("numpy_dnn", params)
    assert stage_key("numpy_dnn", project_params()) == key
    assert repo / "nnlab/models/numpy/layers.py" in stage_deps("numpy_dnn")
    assert repo / "data/split/train_images.npy" in stage_deps("numpy_dnn")
    assert repo / "nnlab/models/keras/builders.py" not in stage_deps("numpy_dnn")
    # A temp experiment runs in a copy, with DVC_ROOT naming another folder: its own data.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_ROOT", str(repo.parent))
        assert stage_key("numpy_dnn", params) == key
    others = {
        "a param": stage_key("numpy_dnn", project_params({"numpy_dnn": {"dropout": 0.3}})),
        "the seed": stage_key("numpy_dnn", project_params({"seed": 7})),
        "another model": stage_key("numpy_cnn", params),
    }
    (repo / "data/split/train_images.npy").write_bytes(b"other data")
    others["the data"] = stage_key("numpy_dnn", params)
    (repo / "data/split/train_images.npy").unlink()
    np.save(repo / "data/split/train_images.npy", np.zeros((4, 8, 8, 1), np.uint8))
    assert stage_key("numpy_dnn", params) == key
    with open(repo / "nnlab/models/numpy/layers.py", "a") as handle:
        handle.write("# a change\n")
    others["its code"] = stage_key("numpy_dnn", params)
    with open(repo / "nnlab/models/keras/builders.py", "a") as handle:
        handle.write("# another family's change\n")
    assert stage_key("numpy_dnn", params) == others["its code"]  # not its code
    assert key not in others.values() and len(set(others.values())) == len(others), others
    # a keras_mlp param is not numpy_dnn's
    assert stage_key("numpy_dnn", project_params({"keras_mlp": {"dropout": 0.1}})) == \
        others["its code"]


def test_a_checkpoint_for_another_key_is_never_read(repo: Path) -> None:
    mine = StageCheckpoint("numpy_dnn", "a" * 16)
    mine.extra["mlflow_run_id"] = "run-a"
    mine.save({"w": np.arange(3.0)}, meta(2))
    assert mine.path.parent == repo / FOLDER
    other = StageCheckpoint("numpy_dnn", "b" * 16)
    assert other.saved() is None
    # Renamed by hand to the other key's name: the key inside says whose it is.
    mine.path.rename(other.path)
    assert StageCheckpoint("numpy_dnn", "b" * 16).saved() is None
    assert not other.path.exists()


def test_a_checkpoint_round_trips_and_a_corrupt_one_is_dropped(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = StageCheckpoint("numpy_dnn", "c" * 16)
    checkpoint.extra["mlflow_run_id"] = "run-c"
    checkpoint.save({"w": np.arange(3.0)}, meta(4))
    again = StageCheckpoint("numpy_dnn", "c" * 16)
    saved = again.saved()
    assert saved is not None and again.epoch == 4 and again.extra["mlflow_run_id"] == "run-c"
    np.testing.assert_array_equal(saved[0]["w"], np.arange(3.0))
    checkpoint.path.write_bytes(checkpoint.path.read_bytes()[:50])  # truncated
    assert StageCheckpoint("numpy_dnn", "c" * 16).saved() is None
    assert "ignoring an unreadable checkpoint" in capsys.readouterr().out
    assert not checkpoint.path.exists()


@pytest.mark.parametrize(("change", "problem"), [
    ({"epoch": 10**9}, "it says epoch 1000000000 of a training of 30 epochs"),
    ({"epoch": 0, "rows": []}, "its epoch is 0, not a count of finished epochs"),
    ({"epoch": "3"}, "its epoch is '3', not a count of finished epochs"),
    ({"rows": meta(2)["rows"]}, "its history has 2 rows for 3 epochs"),
    ({"rows": [{"epoch": 1}, {"epoch": 3}, {"epoch": 2}]}, "its history's row 2 is not epoch 2's"),
    ({"rows": [{"epoch": 1, "loss": "low"}, {"epoch": 2}, {"epoch": 3}]}, "row 1 is not"),
    ({"best_epoch": 7}, "its best epoch 7 is not one of its 3 epochs"),
    ({"stage": {"seconds": 1e400}}, "its training time inf is not a number of seconds"),
    ({"stage": {"seconds": -5}}, "its training time -5 is not a number of seconds"),
    ({"stage": ["run"]}, "its stage record is not a mapping"),
])
def test_a_checkpoint_whose_numbers_cannot_be_this_trainings_is_not_used(
        repo: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object],
        problem: str) -> None:
    # Written as the real file, with the right key: only its contents are wrong.
    import json

    checkpoint = StageCheckpoint("numpy_dnn", "e" * 16, last_epoch=30)
    document = json.dumps({**meta(3, best_epoch=2, stage={"seconds": 1.5}), **change})
    checkpoint.path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(checkpoint.path, w=np.ones(2), __meta__=np.array(document),
             __key__=np.array("e" * 16))
    assert StageCheckpoint("numpy_dnn", "e" * 16, last_epoch=30).saved() is None
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"train@numpy_dnn: ignoring the checkpoint {checkpoint.path}: ")
    assert problem in line and line.endswith("; training from scratch") and "\n" not in line
    assert not checkpoint.path.exists()


@pytest.mark.parametrize(("array", "problem"), [
    (np.array([1.0, np.nan]), "its array 'w' is not finite"),
    (np.array(["a", "b"]), "its array 'w' holds <U1, not numbers"),
])
def test_a_checkpoint_with_arrays_no_training_makes_is_not_used(
        repo: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray, problem: str) -> None:
    checkpoint = StageCheckpoint("numpy_dnn", "f" * 16, last_epoch=30)
    checkpoint.save({"w": array}, meta(2))
    assert StageCheckpoint("numpy_dnn", "f" * 16, last_epoch=30).saved() is None
    assert problem in capsys.readouterr().out
    checkpoint.save({"w": np.ones(2)}, meta(30))  # the last epoch of 30: used
    assert StageCheckpoint("numpy_dnn", "f" * 16, last_epoch=30).epoch == 30


def test_short_epochs_are_checkpointed_every_few_seconds_and_the_last_always(
        repo: Path) -> None:
    checkpoint = StageCheckpoint("numpy_dnn", "d" * 16, last_epoch=5)
    for epoch in (1, 2, 3):  # well within 2 seconds: only the first is written
        checkpoint.save({}, meta(epoch))
    assert StageCheckpoint("numpy_dnn", "d" * 16).epoch == 1
    checkpoint.save({}, meta(4, stopped_early=True))  # early stopping's last epoch
    assert StageCheckpoint("numpy_dnn", "d" * 16).epoch == 4
    checkpoint.save({}, meta(5))  # the last one
    assert StageCheckpoint("numpy_dnn", "d" * 16).epoch == 5


def test_nnlab_restart_throws_the_checkpoint_away(repo: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    params = project_params()
    StageCheckpoint("numpy_dnn", stage_key("numpy_dnn", params)).save({}, meta(1))
    assert StageCheckpoint.for_stage("numpy_dnn", params).saved() is not None
    monkeypatch.setenv(RESTART_VARIABLE, "1")
    assert StageCheckpoint.for_stage("numpy_dnn", params).saved() is None
    assert not list((repo / FOLDER).iterdir())


class _Memory:
    """A models.base.Checkpoint in memory."""

    def __init__(self) -> None:
        self.state: tuple[dict[str, np.ndarray], dict[str, object]] | None = None

    def saved(self) -> tuple[dict[str, np.ndarray], dict[str, object]] | None:
        return self.state

    def save(self, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
        import copy

        self.state = ({key: np.array(value) for key, value in arrays.items()},
                      copy.deepcopy(meta))


@pytest.mark.parametrize(("model", "changes"), [
    ("numpy_dnn", {"epochs": 6, "early_stopping_patience": 2, "batch_norm": True,
                   "learning_rate_decay": "step", "decay_epochs": 2}),
    ("numpy_cnn", {"epochs": 4, "blocks": [{"filters": 4, "convs": 1}], "dense_units": [8],
                   "augment_shift": 0.2, "batch_norm": True}),
    pytest.param("keras_mlp", {"epochs": 6, "early_stopping_patience": 2, "hidden_units": [16],
                               "batch_norm": True}, marks=pytest.mark.tensorflow),
    pytest.param("cnn", {"epochs": 4, "blocks": [{"filters": 4, "convs": 1}], "dense_units": [8],
                         "augment": {"shift": 0.1, "flip": True}},
                 marks=pytest.mark.tensorflow),
])
def test_a_fit_stopped_after_any_epoch_goes_on_bit_for_bit(
        model: str, changes: dict[str, object]) -> None:
    """Weights, optimizer moments, the data order, augmentation, dropout, batch-norm
    statistics, early stopping and the learning-rate schedule all come back, stopped after
    the first epoch or a later one. Keras too: with op determinism on, the same machine gives
    the same floats."""
    params = project_params({model: changes}).model_params(model)
    images, labels = make_images(40, 3, (8, 8, 1), seed=1)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    train, val = (images[:90], labels[:90]), (images[90:], labels[90:])
    straight = new_model(model, params, 5)
    rows = straight.fit(train, val, 3)
    for stop_after in (1, 3):
        def stop(row: dict[str, float], stop_after: int = stop_after) -> None:
            if row["epoch"] == stop_after:
                raise Interrupted("SIGTERM", 15)

        memory = _Memory()
        with pytest.raises(Interrupted):
            new_model(model, params, 5).fit(train, val, 3, on_epoch=stop,
                                                  checkpoint=memory)
        resumed = new_model(model, params, 5)
        assert resumed.fit(train, val, 3, checkpoint=memory) == rows, stop_after
        for ours, theirs in zip(_weights(resumed), _weights(straight), strict=True):
            np.testing.assert_array_equal(ours, theirs)


def _weights(model: object) -> list[np.ndarray]:
    trained = model.model  # type: ignore[attr-defined]
    if hasattr(trained, "get_weights"):  # Keras
        return [np.asarray(weights) for weights in trained.get_weights()]
    return list(trained.weights().values())


def test_a_log_gets_about_15_epoch_lines_and_a_terminal_one_bar() -> None:
    log = io.StringIO()
    progress = EpochProgress("train@numpy_dnn", 60, stream=log, tty=False)
    for epoch in range(1, 61):
        progress.update({"epoch": epoch, "loss": 0.5, "val_accuracy": 0.9})
    progress.close()
    lines = log.getvalue().splitlines()
    assert 14 <= len(lines) <= 16
    assert lines[0].startswith("train@numpy_dnn: epoch 1/60  loss 0.5000 val_acc 0.9000")
    assert lines[-1].startswith("train@numpy_dnn: epoch 60/60")
    terminal = io.StringIO()
    bar = EpochProgress("train@cnn", 5, done=2, stream=terminal, tty=True)
    bar.update({"epoch": 3, "loss": 0.25, "val_accuracy": 0.75})
    bar.close()
    assert "3/5" in terminal.getvalue() and "val_acc 0.7500" in terminal.getvalue()


def test_tensorflows_banners_are_dropped_and_other_lines_kept() -> None:
    script = (
        "import os, sys\n"
        "from nnlab.core.quiet import filtered_stderr\n"
        "with filtered_stderr():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:17.98   26919 port.cc:153] oneDNN custom operations "
        "are on. You may see slightly different results\\n')\n"
        "    print('a warning that matters', file=sys.stderr)\n"
        "    os.write(2, b'E0000 00:00:17.68   26919 node_def_util.cc:682] NodeDef mentions "
        "attribute use_unbounded_threadpool which is not in the op definition\\n')\n"
        "    os.write(2, b'E0000 00:00:1 other.cc:1] a real error\\n')\n"
        "    sys.stderr.write('progress 50%')\n"
        "print(' after', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert result.stderr == ("a warning that matters\nE0000 00:00:1 other.cc:1] a real error\n"
                             "progress 50% after\n")
