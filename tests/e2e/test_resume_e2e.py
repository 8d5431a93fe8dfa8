"""Long runs, with real processes: a training's epochs are in MLflow and history.csv while it
runs, and a `dvc repro` SIGKILLed in the middle of training goes on, at the next `dvc repro`,
from its last finished epoch, in the same MLflow run, to the result an unstopped run gives.
A checkpoint made with other params is never used."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from tests.support.e2e import copy_project, git, run, ui_prepared, user_env

pytestmark = pytest.mark.slow

# Epochs long enough to stop in the middle of one (a few tenths of a second each here).
LONG = {"numpy_dnn": {"epochs": 14, "hidden_layers": [768, 768], "early_stopping_patience": 5},
        "keras_mlp": {"epochs": 12, "hidden_units": [512, 512], "early_stopping_patience": 4}}


@pytest.fixture(scope="module")
def resumable(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(baseline, tmp_path_factory.mktemp("resume") / "project")
    _set(project, LONG)
    git(project, "commit", "-qam", "a longer numpy_dnn training")
    return project


def _set(project: Path, changes: dict[str, dict[str, object]]) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in changes.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _client(project: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def _running(project: Path) -> list[mlflow.entities.Run]:
    client = _client(project)
    experiment = client.get_experiment_by_name("digits")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")


def _history(project: Path, model: str) -> list[dict[str, str]]:
    path = project / f"reports/{model}/history.csv"
    try:
        with open(path, encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        return []


def _kill_while_training(project: Path, model: str) -> tuple[str, int, int]:
    """Start `dvc repro evaluate@<model>`; once history.csv and the MLflow run both show
    epochs, SIGKILL the whole process group. (run id, epochs the MLflow run had live, epochs
    history.csv had)."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(["dvc", "repro", f"evaluate@{model}"], cwd=project,
                                   env=user_env(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while True:
                assert process.poll() is None, "training ended before the kill"
                assert time.monotonic() < deadline, "no live epochs appeared"
                running = _running(project)
                live = (len(_client(project).get_metric_history(running[0].info.run_id,
                                                                "val_accuracy"))
                        if running else 0)
                rows = len(_history(project, model))
                if live >= 2 and rows >= 3:
                    break
                time.sleep(0.1)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    return running[0].info.run_id, live, rows


def _nothing_valid_left(project: Path, model: str) -> None:
    """After a SIGKILL: no model. A model the kill caught while it was saved is in
    models/<model>.partial, a name DVC and nnlab never read, and the next run removes it;
    history.csv, if SIGKILL left it, is the live one, the epochs done so far (written
    atomically), which the resumed stage rewrites; DVC did not record the stage."""
    assert not (project / f"models/{model}").exists()
    history = _history(project, model)
    assert all(set(row) >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
               for row in history)
    assert [int(row["epoch"]) for row in history] == list(range(1, len(history) + 1))
    assert f"train@{model}" in run(["dvc", "status"], project)


def _weights(project: Path) -> dict[str, np.ndarray]:
    with np.load(project / "models/numpy_dnn/model.npz", allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("model", ["numpy_dnn", pytest.param("keras_mlp",
                                                               marks=pytest.mark.tensorflow)])
def test_a_killed_training_goes_on_from_its_last_epoch_to_the_unstopped_result(
        resumable: Path, tmp_path: Path, model: str) -> None:
    straight = copy_project(resumable, tmp_path / "straight")
    run(["dvc", "repro", f"evaluate@{model}"], straight)

    project = copy_project(resumable, tmp_path / "stopped")
    run_id, live, rows = _kill_while_training(project, model)
    assert live >= 2 and rows >= 3  # live: in MLflow and history.csv while training
    checkpoints = list((project / ".nnlab/checkpoints").glob(f"train@{model}.*.npz"))
    assert len(checkpoints) == 1
    _nothing_valid_left(project, model)
    # Nothing could end its MLflow run. Nothing reruns (back to the committed model), and the
    # run does not stay RUNNING: the next stage, or `make ui` alone, ends it.
    run(["dvc", "checkout"], project)
    assert [found.info.run_id for found in _running(project)] == [run_id]
    if model == "numpy_dnn":  # the next stage; other params: not their checkpoint, so they
        original = (project / "params.yaml").read_text()  # start afresh
        _set(project, {model: {"learning_rate": 0.002, "epochs": 2}})  # (2: a short check)
        output = run(["dvc", "repro", f"train@{model}"], project)
        assert "resuming" not in output
        assert checkpoints[0].exists()  # someone else's: left alone
        (project / "params.yaml").write_text(original)
    else:
        output = ui_prepared(project)
        assert "Marked FAILED 1 run(s) left RUNNING by a process that died" in output
    killed = _client(project).get_run(run_id)
    assert killed.info.status == "FAILED"
    assert killed.data.tags["nnlab.end_reason"] == "process died"

    output = run(["dvc", "repro", f"evaluate@{model}"], project)
    resumed = [line for line in output.splitlines() if "resuming after epoch" in line]
    assert len(resumed) == 1, output
    assert "NNLAB_RESTART=1" in resumed[0]
    assert not checkpoints[0].exists()  # removed once the stage succeeded
    assert not (project / f"models/{model}.partial").exists()

    # What an unstopped run gives: the same metrics, bit for bit (and, for numpy_dnn, the
    # same weights; a .keras file is a zip with timestamps).
    for name in ("metrics.json", "history.csv", "per_class.json"):
        assert (project / f"reports/{model}" / name).read_text() == \
            (straight / f"reports/{model}" / name).read_text(), name
    if model == "numpy_dnn":
        ours, theirs = _weights(project), _weights(straight)
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])

    # The same MLflow run goes on and ends FINISHED, each epoch in it once.
    info = json.loads((project / f"models/{model}/train_info.json").read_text())
    assert info["mlflow_run_id"] == run_id and info["resumed_after_epoch"] >= 1
    client = _client(project)
    assert client.get_run(run_id).info.status == "FINISHED"
    epochs = len(_history(project, model))
    for key in ("loss", "val_accuracy"):
        steps = [metric.step for metric in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, epochs + 1)), key
    assert not _running(project)
