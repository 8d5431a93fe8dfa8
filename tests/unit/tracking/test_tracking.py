"""MLflow tracking against a real SQLite store in a temporary folder."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest

from nnlab.tracking import heartbeat, mlflow_runs
from nnlab.training.live_metrics import LiveMetrics, Pacer
from tests.support.helpers import project_params


def test_store_resolves_from_dvc_root_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str
) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert mlflow_runs.project_root() == tmp_path
    assert mlflow_runs.tracking_uri() == mlflow_store


def test_without_dvc_root_the_nearest_dvc_folder_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "stages").mkdir()
    monkeypatch.chdir(tmp_path / "stages")
    assert mlflow_runs.project_root() == tmp_path


def test_env_tracking_uri_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert mlflow_runs.tracking_uri(tmp_path) == "http://127.0.0.1:5999"


def test_run_records_params_history_tags_and_artifacts(
    tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "sunny-ibex")
    artifact = tmp_path / "history.csv"
    artifact.write_text("epoch,loss\n1,0.5\n")
    tags = {**mlflow_runs.dvc_tags("train@numpy_dnn"), "dataset": "digits"}
    client = mlflow.MlflowClient(mlflow_store)
    with mlflow_runs.training_run("digits", "numpy_dnn", {"learning_rate": 0.01}, tags) as run_id:
        live = LiveMetrics(run_id, Pacer(every=0.0))  # every epoch sent as it ends
        live.log({"epoch": 1, "loss": 0.5})
        time.sleep(0.01)  # epochs end at different times
        live.log({"epoch": 2, "loss": 0.25})
        live.flush()
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2]  # live
        # epoch 3 never sent (a killed process), epochs 1-2 sent: each ends up there once
        live.complete([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25},
                       {"epoch": 3, "loss": 0.125}])
        mlflow_runs.log_results({"test_accuracy": 0.9}, [artifact])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"learning_rate": "0.01"}
    assert run.data.tags["dvc.exp_name"] == "sunny-ibex"
    assert run.data.tags["dvc.stage"] == "train@numpy_dnn"
    assert run.data.metrics["test_accuracy"] == 0.9
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25), (3, 0.125)]
    assert history[0].timestamp < history[1].timestamp  # when each epoch ended, not the start
    assert [item.path for item in client.list_artifacts(run_id)] == ["history.csv"]
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "digits").as_uri()

    with mlflow_runs.resume_run("digits", run_id, "evaluate@numpy_dnn"):
        mlflow_runs.log_results({"val_accuracy": 0.8}, [])
    assert client.get_run(run_id).data.metrics["val_accuracy"] == 0.8


def test_epochs_shorter_than_the_pacers_interval_go_out_together(mlflow_store: str) -> None:
    client = mlflow.MlflowClient(mlflow_store)
    with mlflow_runs.training_run("digits", "numpy_dnn", {}, {"model": "numpy_dnn"}) as run_id:
        live = LiveMetrics(run_id, Pacer(every=3600.0))
        for epoch in (1, 2, 3):
            live.log({"epoch": epoch, "loss": 1.0 / epoch})
        live.flush()
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1]  # the first
        live.complete([{"epoch": epoch, "loss": 1.0 / epoch} for epoch in (1, 2, 3)])
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]


def test_failure_marks_run_failed_with_the_error(mlflow_store: str) -> None:
    with pytest.raises(RuntimeError, match="loss became nan"):
        with mlflow_runs.training_run("digits", "numpy_dnn", {}, {"model": "numpy_dnn"}):
            raise RuntimeError("loss became nan in epoch 3")
    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: loss became nan in epoch 3"


def test_evaluating_a_run_missing_from_the_store_opens_a_tagged_run(mlflow_store: str) -> None:
    with mlflow_runs.resume_run("digits", "0" * 32, "evaluate@cnn") as run_id:
        mlflow_runs.log_results({"test_accuracy": 0.5}, [])
    run = mlflow.MlflowClient(mlflow_store).get_run(run_id)
    assert run.data.tags["nnlab.missing_train_run"] == "0" * 32


def test_diverging_training_leaves_no_model_and_a_failed_run(
    tmp_path: Path, mlflow_store: str
) -> None:
    from nnlab.core.errors import DivergenceError
    from nnlab.core.layout import Layout
    from nnlab.data import ingest
    from nnlab.data import split as data_split
    from nnlab.training import train as train_step

    params = project_params(
        {"numpy_dnn": {"learning_rate": 10.0, "epochs": 5}}  # Adam blows up, ends at chance
    )
    layout = Layout(tmp_path)
    ingest.download(params.data, layout)
    ingest.prepare(params.data, layout)
    data_split.split(params.data, params.seed, layout)
    with pytest.raises(DivergenceError, match="lower numpy_dnn.learning_rate"):
        train_step.train("numpy_dnn", params, layout)
    assert not layout.model_dir("numpy_dnn").exists()
    assert not list((tmp_path / "models").glob("*partial*"))
    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("DivergenceError: numpy_dnn: training loss blew up")
    assert run.data.tags["nnlab.end_reason"] == "error"


def test_runs_of_dead_processes_are_failed_and_live_ones_kept(mlflow_store: str) -> None:
    import socket
    import subprocess
    import sys
    import time

    # A real process that has ended: its pid is free (or reused with another start time).
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    experiment_id = mlflow_runs.setup("digits")
    other_id = mlflow_runs.setup("mnist")  # a dead run of any experiment ends
    client = mlflow.MlflowClient(mlflow_store)
    host = socket.gethostname()
    dead = client.create_run(other_id, tags={
        heartbeat.PID_TAG: str(finished.pid), heartbeat.STARTED_TAG: "1.0",
        heartbeat.HOST_TAG: host}).info.run_id
    alive = client.create_run(experiment_id, tags=heartbeat.owner_tags()).info.run_id
    beating = {heartbeat.PID_TAG: "1", heartbeat.STARTED_TAG: "1.0",
               heartbeat.HOST_TAG: "another-machine"}
    elsewhere = client.create_run(experiment_id, tags={
        **beating, heartbeat.ALIVE_TAG: f"{time.time() - 60:.0f}"}).info.run_id
    lost = client.create_run(experiment_id, tags={
        **beating, heartbeat.ALIVE_TAG: f"{time.time() - 301:.0f}"}).info.run_id
    untagged = client.create_run(experiment_id).info.run_id  # e.g. a sweep's parent run

    assert sorted(heartbeat.end_dead_runs()) == sorted([dead, lost])
    for run_id in (dead, lost):
        assert client.get_run(run_id).info.status == "FAILED"
        assert client.get_run(run_id).data.tags[heartbeat.END_TAG] == "process died"
    for run_id in (alive, elsewhere, untagged):
        assert client.get_run(run_id).info.status == "RUNNING"


def test_an_open_run_beats_and_stops_beating_when_it_ends(mlflow_store: str) -> None:
    import time

    experiment_id = mlflow_runs.setup("digits")
    client = mlflow.MlflowClient(mlflow_store)
    run_id = client.create_run(experiment_id, tags={heartbeat.ALIVE_TAG: "0"}).info.run_id
    with heartbeat.beating(run_id, every=0.05):
        deadline = time.monotonic() + 30
        while client.get_run(run_id).data.tags[heartbeat.ALIVE_TAG] == "0":
            assert time.monotonic() < deadline, "no beat"
            time.sleep(0.05)
    beat = client.get_run(run_id).data.tags[heartbeat.ALIVE_TAG]
    assert abs(float(beat) - time.time()) < 30
    client.set_tag(run_id, heartbeat.ALIVE_TAG, "1")
    time.sleep(0.3)
    assert client.get_run(run_id).data.tags[heartbeat.ALIVE_TAG] == "1"  # no beat after


def test_an_interrupted_run_is_killed_with_the_signal_as_tag(mlflow_store: str) -> None:
    from nnlab.core.errors import Interrupted

    with pytest.raises(Interrupted):
        with mlflow_runs.training_run("digits", "cnn", {}, {"model": "cnn"}):
            raise Interrupted("SIGTERM", 15)
    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "KILLED"
    assert run.data.tags[heartbeat.END_TAG] == "stopped by SIGTERM"
    assert mlflow.active_run() is None
