"""The team stack with its real engines: `nnlab server start` (PostgreSQL from pgserver,
SeaweedFS S3, `mlflow server`, Optuna's gRPC proxy) on free loopback ports, a `dvc exp run`
that logs to it, a restart, a DVC remote round trip, and what happens when it is down.

No test here may skip: every part comes from a wheel in requirements.lock.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from nnlab.core.catalog import MODEL_NAMES
from nnlab.server.settings import free_port
from nnlab.tracking.server_check import SERVER_CHECK_SECONDS
from tests.support.e2e import GIT, copy_project, git, ran_stages, run, user_env, wait_for_queue

pytestmark = pytest.mark.slow
MODELS = list(MODEL_NAMES)
# Short, so the train stages rerun quickly; accuracy floors are test_pipeline_e2e's job.
CHANGES = ["numpy_dnn.epochs=2", "numpy_cnn.epochs=1", "keras_mlp.epochs=1", "cnn.epochs=1",
           "logreg.max_iter=150"]


@dataclass
class Stack:
    data_dir: Path
    ports: dict[str, int]

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    def nnlab(self, action: str, cwd: Path, check: bool = True, *extra: str) -> str:
        return run(["nnlab", "server", action, "--data-dir", str(self.data_dir), *extra],
                   cwd, check=check)

    def start(self, cwd: Path) -> str:
        return self.nnlab("start", cwd, True, "--mlflow-port", str(self.ports["mlflow"]),
                          "--s3-port", str(self.ports["s3"]),
                          "--grpc-port", str(self.ports["grpc"]),
                          "--postgres-port", str(self.ports["postgres"]),
                          "--janitor-every", "5")

    def exports(self) -> dict[str, str]:
        """The env file's variables, as `source .nnlab/server/env` sets them."""
        return dict(line.removeprefix("export ").split("=", 1) for line in
                    (self.data_dir / "env").read_text().splitlines()
                    if line.startswith("export "))

    def api(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.uri}{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def runs(self) -> list[dict[str, Any]]:
        experiment = self.api("/api/2.0/mlflow/experiments/get-by-name?experiment_name=digits")
        found = self.api("/api/2.0/mlflow/runs/search", {
            "experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100})
        return list(found.get("runs", []))

    def s3_keys(self, bucket: str) -> list[str]:
        import boto3

        credentials = json.loads((self.data_dir / "credentials.json").read_text())
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.ports['s3']}",
                          region_name="us-east-1",
                          aws_access_key_id=credentials["s3_access_key"],
                          aws_secret_access_key=credentials["s3_secret_key"])
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Not under pytest's temporary root: as root, PostgreSQL runs as another user, and any
    # pytest session that starts meanwhile on this machine makes that root private again
    # (mode 0700), which locks the server out of its own data dir.
    folder = Path(tempfile.mkdtemp(prefix="nnlab-team-"))
    ports = {"mlflow": free_port(), "s3": free_port(), "grpc": free_port(),
             "postgres": free_port()}
    stack = Stack(folder / "server", ports)
    try:
        stack.start(folder)
        yield stack
    finally:
        stack.nnlab("stop", folder, False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def team_project(stack: Stack, baseline: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Path:
    """A copy of the trained baseline, without its local MLflow store, whose `dvc exp run`
    retrains every model and logs to the team server. (The sweep tests run first on this
    worker, while the other one trains the baseline.)"""
    project = copy_project(baseline, tmp_path_factory.mktemp("team-project") / "project")
    (project / "mlflow.db").unlink()
    shutil.rmtree(project / "mlartifacts")
    output = run(["dvc", "exp", "run", "-n", "team-exp",
                  *(arg for change in CHANGES for arg in ("-S", change))],
                 project, env={"MLFLOW_TRACKING_URI": stack.uri})
    assert {f"train@{model}" for model in MODELS} <= ran_stages(output)
    assert "split" not in ran_stages(output)
    return project


def _check_runs(stack: Stack, project: Path) -> dict[str, dict[str, Any]]:
    """The experiment's runs on the server, by model: one per model, finished, with params,
    the test and validation metrics of the project's reports/, and per-epoch history."""
    runs = {_tags(found).get("model"): found for found in stack.runs()
            if _tags(found).get("dvc.exp_name") == "team-exp"}
    assert set(runs) == set(MODELS), f"runs on the server: {sorted(map(str, runs))}"
    for model, found in runs.items():
        assert found["info"]["status"] == "FINISHED", model
        metrics = {metric["key"]: metric["value"] for metric in found["data"]["metrics"]}
        reported = json.loads((project / "reports" / model / "metrics.json").read_text())
        assert metrics["test.accuracy"] == pytest.approx(reported["test"]["accuracy"])
        assert metrics["val.accuracy"] == pytest.approx(reported["val"]["accuracy"])
        params = {param["key"] for param in found["data"]["params"]}
        assert {"seed", "dataset"} <= params
        history = stack.api(f"/api/2.0/mlflow/metrics/get-history?run_id="
                            f"{found['info']['run_id']}&metric_key=val_accuracy")["metrics"]
        assert len(history) >= 1 and history[0]["step"] in (0, 1)
    return runs


def _tags(found: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in found["data"].get("tags", [])}


def _download_model(stack: Stack, project: Path, model: str) -> tuple[str, str]:
    """(model id, its MLmodel file) of the model that `train@<model>` logged, downloaded
    through the server, which reads it from S3."""
    info = json.loads((project / "models" / model / "train_info.json").read_text())
    model_id = info["mlflow_model_uri"].removeprefix("models:/")
    logged = stack.api(f"/api/2.0/mlflow/logged-models/{model_id}")["model"]["info"]
    assert logged["source_run_id"] == info["mlflow_run_id"]
    location = logged["artifact_uri"].removeprefix("mlflow-artifacts:/").strip("/")
    url = f"{stack.uri}/api/2.0/mlflow-artifacts/artifacts/{location}/MLmodel"
    with urllib.request.urlopen(url, timeout=30) as response:
        return model_id, str(response.read().decode())


def test_dvc_exp_run_logs_every_model_to_the_server(stack: Stack, team_project: Path) -> None:
    _check_runs(stack, team_project)
    keys = stack.s3_keys("mlflow")
    for model in MODELS:
        model_id, mlmodel = _download_model(stack, team_project, model)
        flavor = "keras" if model in ("keras_mlp", "cnn") else "python_function"
        assert flavor in mlmodel and "signature" in mlmodel, mlmodel
        # The model lives in the S3 bucket, not on this disk.
        assert f"{model_id}/artifacts/MLmodel" in "\n".join(keys)
        assert not list(team_project.rglob(f"*{model_id}*"))
    # Nothing went to a local store.
    assert not (team_project / "mlflow.db").exists()
    assert not (team_project / "mlartifacts").exists()


def test_a_promoted_model_predicts_where_there_is_only_the_tracking_uri(
        stack: Stack, team_project: Path, tmp_path: Path) -> None:
    """`nnlab promote` registers the workspace's numpy_dnn on the server as
    digits-numpy_dnn@champion; in a folder with no repo, no data and no outputs, with only
    MLFLOW_TRACKING_URI set, `nnlab predict --model models:/digits-numpy_dnn@champion` gives
    the workspace model's probabilities (the artifacts come through the server)."""
    import numpy as np
    from PIL import Image

    env = {**user_env(), "MLFLOW_TRACKING_URI": stack.uri}
    output = run(["nnlab", "promote", "--model", "numpy_dnn"], team_project, env=env)
    assert "digits-numpy_dnn: registered version 1" in output, output
    assert "digits-numpy_dnn@champion -> version 1" in output, output
    pixels = np.load(team_project / "data/prepared/test_images.npy", allow_pickle=False)[:3]
    files = []
    for index, image in enumerate(pixels):
        files.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(image[:, :, 0]).save(files[-1])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results = []
    for model, cwd in (("numpy_dnn", team_project),
                       ("models:/digits-numpy_dnn@champion", elsewhere)):
        done = subprocess.run(["nnlab", "predict", "--model", model, "--json", *files],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout))
    assert results[0] == results[1] and len(results[0]) == 3
    assert list(elsewhere.iterdir()) == []  # nothing downloaded into the folder


def test_a_queued_experiment_logs_to_the_server(stack: Stack, team_project: Path) -> None:
    """`dvc queue start` runs experiments in DVC's workers, which inherit the environment of
    the shell that started them: their runs land on the server too."""
    run(["dvc", "exp", "run", "--queue", "-n", "team-queued", "-S", "logreg.max_iter=120",
         "evaluate@logreg"], team_project)
    run(["dvc", "queue", "start", "-j", "1"], team_project,
        env={"MLFLOW_TRACKING_URI": stack.uri})
    assert wait_for_queue(team_project, ["team-queued"], timeout=900) == {
        "team-queued": "Success"}
    queued = [found for found in stack.runs() if _tags(found).get("dvc.exp_name") ==
              "team-queued"]
    assert len(queued) == 1 and queued[0]["info"]["status"] == "FINISHED"
    assert _tags(queued[0])["model"] == "logreg"
    params = {param["key"]: param["value"] for param in queued[0]["data"]["params"]}
    assert params["max_iter"] == "120"
    assert "test.accuracy" in {metric["key"] for metric in queued[0]["data"]["metrics"]}
    assert not (team_project / "mlflow.db").exists()  # nothing went to a local store


def _machine_b(command: list[str], project: Path, env: dict[str, str],
               log: Path) -> subprocess.Popen[bytes]:
    """`command` as on another machine: its own host name (UTS namespace) and its own PID
    namespace, whose first process the test kills to take every process of it down at once,
    as a power cut does."""
    script = f"hostname machine-b && exec {shlex.join(command)}"
    return subprocess.Popen(["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c",
                             script], cwd=project, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def test_a_lost_sweep_machine_costs_its_trial_only(
        stack: Stack, team_project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two `nnlab sweep` commands join one study on the stack's PostgreSQL: one as on the
    server's machine (the socket, the default there), one as on machine B (its own clone,
    host name and PID namespace, and the env file's lines: PostgreSQL over TCP with a
    password). B is killed whole in the middle of a trial. A finishes the study with exactly
    4 trials: B's trial ends FAIL, its params run again, its MLflow run ends KILLED, and all
    trials sit under one parent run."""
    import optuna
    import yaml

    from nnlab.search.study import default_url, open_study
    from nnlab.search.trial_link import RUN_ATTR

    # The team project's results committed (the data stages run: a trial only trains and
    # evaluates), with a numpy_dnn whose trials train long enough to be killed mid-trial.
    project = copy_project(team_project, tmp_path_factory.mktemp("team-sweep") / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["numpy_dnn"].update(hidden_layers=[64], epochs=40, early_stopping_patience=None)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "team-exp's results; a longer numpy_dnn")
    clone = copy_project(project, tmp_path_factory.mktemp("machine-b") / "project")
    (project / ".nnlab").mkdir(exist_ok=True)
    (project / ".nnlab" / "server").symlink_to(stack.data_dir)  # the stack runs "here"
    url = default_url(project)
    assert url.startswith("postgresql+psycopg://") and "?host=" in url  # the socket
    exports = stack.exports()
    assert exports["NNLAB_OPTUNA_STORAGE"].startswith("postgresql+psycopg://nnlab_optuna:")
    command = ["nnlab", "sweep", "--study", "lost", "--model", "numpy_dnn", "--trials", "4",
               "--pruner", "none", "--heartbeat", "2",
               "--sample", "learning_rate=loguniform(1e-3,1e-1)"]
    logs = [tmp_path_factory.mktemp("logs") / f"sweep-{name}.log" for name in "ab"]
    env = {**user_env(), "MLFLOW_TRACKING_URI": stack.uri}
    first = subprocess.Popen(command, cwd=project, env=env, stdout=logs[0].open("w"),
                             stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:  # the first creates the study; B joins it
        assert first.poll() is None, logs[0].read_text()[-3000:]
        assert time.monotonic() < deadline
        try:
            open_study(url, "lost")
            break
        except Exception:  # noqa: BLE001 (not made yet)
            time.sleep(0.5)
    second = _machine_b(command, clone, {**user_env(), **exports}, logs[1])
    try:
        study, _ = open_study(url, "lost")
        while True:  # B's trial trains (its stage has opened its MLflow run)
            assert second.poll() is None, logs[1].read_text()[-3000:]
            assert time.monotonic() < deadline, logs[1].read_text()[-3000:]
            lost = [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                    if str(t.user_attrs.get("nnlab.worker", "")).startswith("machine-b:")
                    and RUN_ATTR in t.user_attrs]
            if lost:
                break
            time.sleep(0.2)
        (init,) = psutil.Process(second.pid).children()
        init.kill()  # PID 1 of B's namespace: the kernel kills every process in it
        killed_at, killed_clock = time.monotonic(), time.time()
        second.wait(timeout=60)
        assert first.wait(timeout=900) == 0, logs[0].read_text()[-3000:]
        took = time.monotonic() - killed_at
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
    (victim,) = lost
    study, _ = open_study(url, "lost")
    states = {t.number: t.state.name for t in study.trials}
    assert states[victim.number] == "FAIL"
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(finished) == 4
    retried = [t for t in finished if t.params == victim.params]
    assert retried and retried[0].number > victim.number  # its params ran again
    # A live worker takes the lost trial up once its heartbeat grace (3 x 2 s) is over and
    # the trial it was running ends: at most grace plus one trial (plus DVC's start-up).
    longest = max(t.duration.total_seconds() for t in finished if t.duration)
    assert retried[0].datetime_start is not None
    waited = retried[0].datetime_start.timestamp() - killed_clock
    print(f"lost machine: killed mid-trial -> its trial retried after {waited:.1f} s "
          f"(grace 6 s, longest trial {longest:.1f} s) -> study finished after {took:.1f} s")
    assert waited <= 6 + longest + 10
    lost_run = stack.api(f"/api/2.0/mlflow/runs/get?run_id={victim.user_attrs[RUN_ATTR]}")
    assert lost_run["run"]["info"]["status"] == "KILLED"
    runs = [found for found in stack.runs() if _tags(found).get("nnlab.study") == "lost"]
    (parent,) = [found for found in runs if _tags(found).get("nnlab.kind") == "study"]
    children = [found for found in runs if found is not parent]
    assert all(_tags(child)["mlflow.parentRunId"] == parent["info"]["run_id"]
               for child in children)
    assert sorted(_tags(child)["nnlab.trial"] for child in children
                  if child["info"]["status"] == "FINISHED") == \
        sorted(str(t.number) for t in finished)
    assert "RUNNING" not in {found["info"]["status"] for found in runs}
    report = run(["nnlab", "sweep", "--study", "lost", "--report", "--storage",
                  exports["NNLAB_OPTUNA_STORAGE"]], project)
    assert "Study 'lost': numpy_dnn, 4 trials wanted; 4 complete" in report


def test_the_janitor_ends_runs_whose_process_is_gone(stack: Stack) -> None:
    """On the team server, a run of this host whose process died and a run of a machine
    that stopped beating end FAILED within a few of the janitor's rounds, with nothing else
    running; a live machine's run is left alone."""
    import socket

    from nnlab.tracking import heartbeat

    finished = subprocess.Popen(["python", "-c", "pass"])
    finished.wait()
    experiment = stack.api("/api/2.0/mlflow/experiments/get-by-name?experiment_name=digits")
    experiment_id = experiment["experiment"]["experiment_id"]

    def create(tags: dict[str, str]) -> str:
        body = {"experiment_id": experiment_id,
                "tags": [{"key": key, "value": value} for key, value in tags.items()]}
        return str(stack.api("/api/2.0/mlflow/runs/create", body)["run"]["info"]["run_id"])

    here = create({heartbeat.PID_TAG: str(finished.pid), heartbeat.STARTED_TAG: "1.0",
                   heartbeat.HOST_TAG: socket.gethostname()})
    away = {heartbeat.PID_TAG: "7", heartbeat.STARTED_TAG: "1.0", heartbeat.HOST_TAG: "machine-c"}
    gone = create({**away, heartbeat.ALIVE_TAG: f"{time.time() - 600:.0f}"})
    beating = create({**away, heartbeat.ALIVE_TAG: f"{time.time() + 600:.0f}"})
    deadline = time.monotonic() + 60

    def status(run_id: str) -> str:
        return str(stack.api(f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]["info"][
            "status"])

    while {status(here), status(gone)} != {"FAILED"}:
        assert time.monotonic() < deadline, (status(here), status(gone))
        time.sleep(0.5)
    assert status(beating) == "RUNNING"
    stack.api("/api/2.0/mlflow/runs/update", {"run_id": beating, "status": "FINISHED"})


def test_a_stage_fails_in_one_line_when_the_server_is_down(stack: Stack,
                                                           team_project: Path) -> None:
    """Stop the stack: training refuses to start, fast, and no run is left RUNNING; start it
    again: the same runs and artifacts are there."""
    before = {found["info"]["run_id"] for found in stack.runs()}
    stack.nnlab("stop", team_project)
    status = subprocess.run(["nnlab", "server", "status", "--data-dir", str(stack.data_dir)],
                            capture_output=True, text=True, env=_env())
    assert status.returncode == 3 and "down" in status.stdout and " up " not in status.stdout
    startup, _ = _failed_stage(team_project, stack.uri, "no_such_model")
    seconds, stage = _failed_stage(team_project, stack.uri, "logreg")
    errors = [line for line in stage.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and stack.uri in errors[0] and "make server" in errors[0], errors
    # Fast: the stage's own start (its imports, timed in this run: a bad argument fails
    # after them), the SERVER_CHECK_SECONDS it gives a restarting server, and a margin;
    # not MLflow's retries, which go on for minutes.
    assert seconds < startup + SERVER_CHECK_SECONDS + 5, \
        f"the error took {seconds:.1f} s; the stage's start {startup:.1f} s"
    assert not (team_project / "models" / "logreg").exists()  # no stale model left behind

    stack.start(team_project)
    _check_runs(stack, team_project)
    assert {found["info"]["run_id"] for found in stack.runs()} == before
    assert "keras" in _download_model(stack, team_project, "cnn")[1]
    assert not [found for found in stack.runs() if found["info"]["status"] == "RUNNING"]


def _failed_stage(project: Path, uri: str, model: str
                  ) -> tuple[float, subprocess.CompletedProcess[str]]:
    """(seconds, the process) of `python -m stages.train MODEL`, which fails with code 2."""
    began = time.monotonic()
    stage = subprocess.run(["python", "-m", "stages.train", model], cwd=project,
                           capture_output=True, text=True, env=_env(uri))
    assert stage.returncode == 2, stage.stderr
    return time.monotonic() - began, stage


def _metric_steps(stack: Stack, run_id: str, key: str = "val_accuracy") -> list[int]:
    history = stack.api(f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}")
    return sorted(int(metric["step"]) for metric in history.get("metrics", []))


def _training_run_id(stage: subprocess.Popen[str], project: Path, seconds: float = 300) -> str:
    """The run id in the checkpoint of `stage`, training in `project`, once it has one (its
    first epoch's). Fails at once, with the stage's output, if the stage ends first."""
    import numpy as np

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in (project / ".nnlab/checkpoints").glob("train@numpy_dnn.*.npz"):
            try:
                with np.load(path, allow_pickle=False) as archive:
                    return str(json.loads(str(archive["__meta__"]))["stage"]["mlflow_run_id"])
            except (OSError, ValueError, KeyError):
                pass  # being replaced
        if stage.poll() is not None:
            output, errors = stage.communicate()
            raise AssertionError(f"the stage ended ({stage.returncode}) before its first "
                                 f"checkpoint:\n{output}{errors or ''}")
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint appeared in {seconds:.0f} s")


@contextlib.contextmanager
def _paused(process: subprocess.Popen[str]) -> Iterator[None]:
    """`process` stopped (SIGSTOP) for the block, so that what the block does to the server
    happens at a known point of the training, however fast the machine trains."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def test_a_server_outage_during_training_costs_no_epoch_and_no_training(
        stack: Stack, team_project: Path, tmp_path: Path) -> None:
    """`nnlab server stop`, then `start`, while a stage trains: training goes on and its run
    ends FINISHED with every epoch. A server still down when training ends: the stage fails
    in one line, and the next run logs the checkpointed model without retraining."""
    import yaml

    project = copy_project(team_project, tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["numpy_dnn"].update(epochs=40, hidden_layers=[768, 768], early_stopping_patience=None)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    command = ["python", "-m", "stages.train", "numpy_dnn"]
    stage = subprocess.Popen(command, cwd=project, env=_env(stack.uri), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run_id, deadline = _training_run_id(stage, project), time.monotonic() + 300
    while len(_metric_steps(stack, run_id)) < 2:  # live, before the outage
        assert stage.poll() is None and time.monotonic() < deadline, stage.communicate()[0]
        time.sleep(0.2)
    with _paused(stage):
        stack.nnlab("stop", project)
    time.sleep(2)  # a few epochs trained with the server down
    with _paused(stage):
        assert stage.poll() is None, "training ended during the outage"
        stack.start(project)
    output, _ = stage.communicate(timeout=600)
    assert stage.returncode == 0, output
    assert _metric_steps(stack, run_id) == list(range(1, 41))
    found = stack.api(f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    assert found["info"]["status"] == "FINISHED"

    # Down at the end (MLflow's client told to give up at once): one line, model kept. The
    # stopped server refuses connections at once; the timeout is for the live server, which
    # can be slow to answer on a loaded machine (and with no retries, one slow answer would
    # fail the stage before its first epoch).
    quick = {**_env(stack.uri), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "120"}
    params["numpy_dnn"].update(epochs=10)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage = subprocess.Popen(command, cwd=project, env=quick, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_id = _training_run_id(stage, project)
    with _paused(stage):
        stack.nnlab("stop", project)
    try:
        _, errors = stage.communicate(timeout=600)
        lines = [line for line in errors.splitlines() if line.strip()
                 and not line.startswith(("train@numpy_dnn: epoch",
                                          "train@numpy_dnn: training on"))]
        assert stage.returncode == 2, errors
        assert len(lines) == 1 and stack.uri in lines[0] and "kept in its checkpoint" in \
            lines[0], "\n".join(lines)
        assert list((project / ".nnlab/checkpoints").glob("train@numpy_dnn.*.npz"))
        assert not (project / "models/numpy_dnn").exists()
    finally:
        stack.start(project)
    output = run(command, project, env={"MLFLOW_TRACKING_URI": stack.uri})
    assert "resuming after epoch 10" in output and "train@numpy_dnn: epoch" not in output, output
    found = stack.api(f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    assert found["info"]["status"] == "FINISHED"
    assert _metric_steps(stack, run_id) == list(range(1, 11))
    assert json.loads((project / "models/numpy_dnn/train_info.json").read_text())[
        "mlflow_run_id"] == run_id


def test_dvc_push_then_a_clone_pulls_everything(stack: Stack, baseline: Path,
                                                tmp_path: Path) -> None:
    project = copy_project(baseline, tmp_path / "project")
    stack.start(project)  # already up: only configures the `team` remote of this repo
    local = (project / ".dvc" / "config.local").read_text()
    assert "team" in local and "secret_access_key" in local
    assert ".dvc/config.local" not in git(project, "status", "--porcelain", "--ignored=no")
    assert git(project, "check-ignore", ".dvc/config.local") == ".dvc/config.local"
    run(["nnlab", "push", "-r", "team", "--jobs", "2"], project)  # dvc's options pass through
    assert stack.s3_keys("dvc"), "push sent nothing to the bucket"

    clone = tmp_path / "clone"
    run([*GIT, "clone", "-q", str(project), str(clone)], tmp_path)
    # Join as another machine would: the commands in the env file.
    joins = [line.removeprefix("#").strip() for line in
             (stack.data_dir / "env").read_text().splitlines() if line.startswith("#   dvc")]
    assert len(joins) == 4
    for command in joins:
        run(command.split(), clone)
    run(["dvc", "pull"], clone)
    assert "up to date" in run(["dvc", "status"], clone)
    assert not ran_stages(run(["dvc", "repro"], clone))


def test_an_unreachable_remote_fails_in_one_line(stack: Stack, baseline: Path,
                                                 tmp_path: Path) -> None:
    project = copy_project(baseline, tmp_path / "project")
    stack.start(project)
    run(["dvc", "remote", "modify", "--local", "team", "endpointurl",
         f"http://127.0.0.1:{free_port()}"], project)
    result = subprocess.run(["nnlab", "push"], cwd=project, capture_output=True, text=True,
                            env=_env(), timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "`team`" in lines[0] and "nnlab server status" in lines[0]


def test_a_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    """The MLflow port is taken: the error names MLflow, and the parts started before it
    (PostgreSQL, SeaweedFS, S3) are stopped again."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["nnlab", "server", "start", "--data-dir", str(tmp_path / "server"),
             "--mlflow-port", str(port), "--s3-port", str(free_port()),
             "--grpc-port", str(free_port()), "--postgres-port", str(free_port())],
            cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("nnlab server: error: mlflow failed to start") and str(port) in error
    assert "stopped what this start had started (postgres, seaweedfs, s3)" in error
    status = subprocess.run(["nnlab", "server", "status", "--data-dir",
                             str(tmp_path / "server")], capture_output=True, text=True,
                            env=_env())
    assert status.returncode == 3 and " up " not in status.stdout


def _env(uri: str | None = None) -> dict[str, str]:
    return {**user_env(), **({"MLFLOW_TRACKING_URI": uri} if uri else {})}


def test_with_auth_only_the_env_file_credentials_get_in(stack: Stack, tmp_path: Path) -> None:
    """`--auth`: MLflow's basic-auth app. Anonymous API calls get 401, a stage fails in one line
    before training, and the credentials of the env file log a run. This second stack uses
    the first one's PostgreSQL as an existing server (--database-url)."""
    import psycopg

    socket_dir = stack.data_dir / "postgres"  # pgserver puts its socket in its data dir
    socket = f"host={socket_dir}&port={stack.ports['postgres']}"
    with psycopg.connect(f"postgresql://postgres:@/postgres?{socket}",
                         autocommit=True) as connection:
        connection.execute("CREATE DATABASE second")
    database_url = f"postgresql+psycopg://postgres:@/second?{socket}"
    second = Stack(tmp_path / "server", {"mlflow": free_port(), "s3": free_port(),
                                         "grpc": free_port()})
    try:
        output = second.nnlab("start", tmp_path, True, "--auth", "--database-url", database_url,
                              "--mlflow-port",
                              str(second.ports["mlflow"]), "--s3-port", str(second.ports["s3"]),
                              "--grpc-port", str(second.ports["grpc"]))
        assert "external" in output
        password = json.loads((second.data_dir / "credentials.json").read_text())[
            "mlflow_admin_password"]
        assert password not in output  # never printed in full
        with pytest.raises(urllib.error.HTTPError, match="401"):
            second.api("/api/2.0/mlflow/experiments/search?max_results=1")
        check = ("from nnlab.tracking import mlflow_runs; mlflow_runs.check_server(); "
                 "import mlflow; mlflow.set_experiment('auth'); "
                 "mlflow.start_run(); mlflow.log_metric('m', 1.0); mlflow.end_run()")
        refused = subprocess.run(["python", "-c", check], capture_output=True, text=True,
                                 env=_env(second.uri))
        assert "refused our credentials (HTTP 401" in refused.stderr
        exports = second.exports()
        logged = subprocess.run(["python", "-c", check], capture_output=True, text=True,
                                env={**_env(), **exports})
        assert logged.returncode == 0, logged.stderr
    finally:
        stopped = second.nnlab("stop", tmp_path, False)
    assert "postgres     external: left running" in stopped
    with psycopg.connect(database_url.replace("+psycopg", "")) as connection:  # still up
        tables = {row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"experiments", "runs", "metrics"} <= tables
