"""The MLflow UI that `make ui` starts, queried through its REST API for a tiny pipeline's runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest

from nnlab.core.layout import Layout
from nnlab.data import ingest
from nnlab.data import split as data_split
from nnlab.evaluation import evaluate as evaluate_step
from nnlab.training import train as train_step
from tests.support.helpers import project_params

pytestmark = pytest.mark.slow
MODELS = ["numpy_dnn", "logreg"]  # no TensorFlow: the server is what is under test here


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.load(response)
        return result


class Server:
    """`mlflow ui` as `make ui` runs it, on an ephemeral loopback port, in its own process
    group: the server starts helper processes that would outlive a plain kill. One worker:
    on a loaded machine uvicorn's supervisor kept killing slow-starting workers of four."""

    def __init__(self, store: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = log
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
                 "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1], "--workers", "1"],
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                # as nnlab ui runs it (nnlab/server/mlflow_ui.py): without the job runner, whose
                # eight processes (the runner, its huey consumers) took 11 CPU-s here and do
                # nothing for a local store
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )

    def wait(self, timeout: float = 300) -> None:
        """Until the REST API answers (about 20 s here, far longer on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _post(f"{self.url}/api/2.0/mlflow/experiments/search", {"max_results": 1})
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow ui did not answer:\n{self.log.read_text()}")
                time.sleep(1)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def server(mlflow_store: str, tmp_path: Path) -> Iterator[Server]:
    from nnlab.tracking import mlflow_runs

    mlflow_runs.setup("digits")  # create and migrate the store once, before the server reads it
    server = Server(mlflow_store, tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tiny_pipeline(server: Server, tmp_path: Path) -> Layout:
    """numpy_dnn and logreg through every stage, while the server starts."""
    params = project_params({"numpy_dnn": {"epochs": 2, "hidden_layers": [16]},
                       "logreg": {"max_iter": 100}})
    layout = Layout(tmp_path)
    ingest.download(params.data, layout)
    ingest.prepare(params.data, layout)
    data_split.split(params.data, params.seed, layout)
    for model in MODELS:
        train_step.train(model, params, layout)
        evaluate_step.evaluate(model, params, layout)
    return layout


def test_ui_serves_every_param_metric_and_tag(
    tiny_pipeline: Layout, server: Server
) -> None:
    server.wait()
    url = server.url
    experiments = _post(f"{url}/api/2.0/mlflow/experiments/search", {"max_results": 10})
    (digits,) = [e for e in experiments["experiments"] if e["name"] == "digits"]
    found = _post(f"{url}/api/2.0/mlflow/runs/search",
                  {"experiment_ids": [digits["experiment_id"]], "max_results": 100})
    runs = {_tags(run)["model"]: run for run in found["runs"]}
    assert sorted(runs) == sorted(MODELS)
    for model, run in runs.items():
        info = json.loads((tiny_pipeline.model_dir(model) / "train_info.json").read_text())
        metrics = json.loads((tiny_pipeline.report_dir(model) / "metrics.json").read_text())
        assert run["info"]["run_id"] == info["mlflow_run_id"]
        assert run["info"]["status"] == "FINISHED"
        params = {item["key"]: item["value"] for item in run["data"]["params"]}
        assert params["seed"] == "42" and params["dataset"] == "digits"
        served = {item["key"]: item["value"] for item in run["data"]["metrics"]}
        for split in ("val", "test"):
            for name, value in metrics[split].items():
                assert served[f"{split}.{name}"] == pytest.approx(value), name
        assert {"loss", "val_accuracy", "param_count", "training_seconds"} <= set(served)
        tags = _tags(run)
        for key in ("dvc.stage", "dvc.exp_name", "dvc.baseline_rev", "git.commit", "dataset",
                    "dataset.digest"):
            assert tags.get(key), key
        assert tags["dvc.stage"] == f"train@{model}"
    numpy_params = {item["key"]: item["value"] for item in runs["numpy_dnn"]["data"]["params"]}
    assert numpy_params["hidden_layers"] == "[16]" and numpy_params["epochs"] == "2"
    history = urllib.request.urlopen(
        f"{url}/api/2.0/mlflow/metrics/get-history?run_id="
        f"{runs['numpy_dnn']['info']['run_id']}&metric_key=val_accuracy", timeout=30
    )
    steps = [point["step"] for point in json.load(history)["metrics"]]
    assert steps == [1, 2]

    # On a tracking server too, a run left RUNNING by a process that died (SIGKILL) is
    # failed by the next stage's check, through the REST API.
    import socket

    from nnlab.tracking import heartbeat

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    orphan = _post(f"{url}/api/2.0/mlflow/runs/create", {
        "experiment_id": digits["experiment_id"],
        "tags": [{"key": heartbeat.PID_TAG, "value": str(finished.pid)},
                 {"key": heartbeat.STARTED_TAG, "value": "1.0"},
                 {"key": heartbeat.HOST_TAG, "value": socket.gethostname()}],
    })["run"]["info"]["run_id"]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        assert heartbeat.end_dead_runs(experiment_ids=[digits["experiment_id"]]) == [orphan]
    finally:
        mlflow.set_tracking_uri(previous)
    served_run = _post(f"{url}/api/2.0/mlflow/runs/search", {
        "experiment_ids": [digits["experiment_id"]],
        "filter": f"attributes.run_id = '{orphan}'"})["runs"][0]
    assert served_run["info"]["status"] == "FAILED"
    assert _tags(served_run)[heartbeat.END_TAG] == "process died"


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in run["data"]["tags"]}
