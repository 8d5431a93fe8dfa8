"""One cnn trained by two processes on loopback, as on two machines (docs/devices.md, "Several
machines"): `dvc repro` is process 0 in one clone; `nnlab join` runs in another clone, under
its own host name (a UTS namespace, and a mount namespace for an /etc/hosts that names it).
A joiner with other params is refused while process 0 waits on; a late joiner is admitted;
process 0 alone writes the outputs and the MLflow run; a joiner killed mid-training ends the
run FAILED with the reason and keeps the checkpoint; the next start of both goes on from it to
the unstopped run's history, bit for bit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from tests.e2e.test_resume_e2e import _history, _set
from tests.support.e2e import copy_project, git, run, user_env
from tests.support.loopback import coordinator_address

pytestmark = pytest.mark.slow

JOINER_HOST = "machine-b"


def _namespaces(tmp: Path) -> list[str]:
    """The command prefix that runs a joiner as another host: its own host name, which must
    resolve (JAX's CPU collectives look their own name up); plain, where namespaces are not
    allowed (not root)."""
    hosts = tmp / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {JOINER_HOST}\n")
    if subprocess.run(["unshare", "-u", "-m", "true"], capture_output=True).returncode:
        return []
    return ["unshare", "-u", "-m", "sh", "-c",
            f'mount --bind {hosts} /etc/hosts && hostname {JOINER_HOST} && exec "$@"', "--"]


@pytest.fixture(scope="module")
def pair(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Process 0's project and the joiner's clone, at one commit: the cnn on JAX, 2 processes."""
    tmp = tmp_path_factory.mktemp("processes")
    zero = copy_project(baseline, tmp / "zero")
    coordinator = coordinator_address()
    _set(zero, {"cnn": {"backend": "jax", "device": "cpu", "epochs": 6, "batch_size": 32,
                        "processes": 2, "coordinator": coordinator, "join_timeout": 120}})
    git(zero, "commit", "-qam", "the cnn on two processes")
    return zero, copy_project(zero, tmp / "one"), coordinator


def _join(project: Path, prefix: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = user_env() | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*prefix, "python", "-m", "nnlab.cli", "join", "--model", "cnn",
                             "--process-id", "1"], cwd=project, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stage(project: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["dvc", "repro", *args, "train@cnn"], cwd=project, env=user_env(),
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], seconds: float = 300
              ) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def _written(project: Path) -> dict[str, int]:
    """Every output, checkpoint and store file of `project`, with its modification time."""
    found = {}
    for name in ("models", "reports", ".nnlab", "mlartifacts", "mlflow.db", "dvc.lock"):
        paths = [project / name] if (project / name).is_file() else \
            (project / name).rglob("*")
        found |= {str(path): path.stat().st_mtime_ns for path in paths if path.is_file()}
    return found


def _runs(project: Path) -> list[mlflow.entities.Run]:
    """The cnn's training runs, the newest first."""
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    return list(client.search_runs([experiment.experiment_id], "tags.model = 'cnn'",
                                   order_by=["attributes.start_time DESC"]))


def _run(project: Path) -> mlflow.entities.Run:
    return _runs(project)[0]


def test_two_processes_train_one_cnn_refuse_a_stranger_and_resume_after_a_sigkill(
        pair: tuple[Path, Path, str], tmp_path: Path) -> None:
    zero, one, coordinator = pair
    prefix = _namespaces(tmp_path)
    host = socket.gethostname()
    joiner_host = JOINER_HOST if prefix else host
    stranger = copy_project(one, tmp_path / "stranger")  # other params: refused
    _set(stranger, {"cnn": {"learning_rate": 0.01}})

    # 0. Nobody joins within join_timeout; the coordinator's port is taken: one line each,
    # no MLflow run, and nothing trained.
    runs = len(_runs(zero))
    committed = (zero / "params.yaml").read_text()
    _set(zero, {"cnn": {"join_timeout": 2}})
    alone = run(["dvc", "repro", "train@cnn"], zero, check=False)
    assert alone.count("train@cnn: error:") == 1 and (
        f"train@cnn: error: process 1 of 2 never joined within 2 s (cnn.join_timeout); on its "
        f"machine run `nnlab join --model cnn --process-id N` (coordinator {coordinator}), "
        f"then this stage again") in alone, alone
    with socket.socket() as squatter:
        squatter.bind(("", int(coordinator.rsplit(":", 1)[1])))
        squatter.listen()
        taken = run(["dvc", "repro", "train@cnn"], zero, check=False)
    assert (f"train@cnn: error: cnn.coordinator={coordinator}: port "
            f"{coordinator.rsplit(':', 1)[1]} is taken on this machine (another training?); "
            f"choose a free port (the roll call takes the next one too)") in taken, taken
    (zero / "params.yaml").write_text(committed)
    assert len(_runs(zero)) == runs

    # 1. Process 0 waits; a stranger is refused and process 0 waits on; the joiner, late, is
    # admitted. Unstopped: the reference.
    stage = _stage(zero, tmp_path / "zero.log")
    _wait_for(tmp_path / "zero.log", "waiting up to 120 s for process 1 of 2", stage)
    refused = subprocess.run([*prefix, "python", "-m", "nnlab.cli", "join", "--model", "cnn",
                              "--process-id", "1"], cwd=stranger, env=user_env(),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"nnlab join: error: refused by process 0 at {coordinator}: params.yaml's cnn "
        f"section, seed or data.dataset differ from process 0's: use the same params.yaml (the "
        f"same commit and the same `-S` changes)")
    untouched = _written(one)
    joiner = _join(one, prefix, tmp_path / "one.log")
    assert stage.wait(timeout=600) == 0, (tmp_path / "zero.log").read_text()[-3000:]
    assert joiner.wait(timeout=120) == 0, (tmp_path / "one.log").read_text()[-3000:]
    said = (tmp_path / "zero.log").read_text()
    assert f"train@cnn: refused process 1 from {joiner_host}: params.yaml's cnn section" in said
    assert f"train@cnn: process 1 of 2 joined from {joiner_host}" in said
    assert "train@cnn: training on 2 x cpu in 2 processes (jax)" in said
    assert "[Gloo]" not in said and "Traceback" not in said
    assert [line for line in said.splitlines() if "epoch 6/6" in line]
    joined = (tmp_path / "one.log").read_text().strip().splitlines()
    assert joined == [
        f"join@cnn: process 1 of 2 on {joiner_host}, with process 0 on {host} ({coordinator}): "
        f"training on 2 x cpu in 2 processes (jax)",
        "join@cnn: process 1 of 2 done after 6 epochs; process 0 saves the model and logs the "
        "MLflow run"], joined
    reference = _history(zero, "cnn")
    assert len(reference) == 6
    tags = _run(zero).data.tags
    assert (tags["nnlab.processes"], tags["nnlab.device"], tags["nnlab.hosts"]) == (
        "2", "2 x cpu in 2 processes", f"0: {host}, 1: {joiner_host}")
    assert _written(one) == untouched  # the joiner wrote no output, checkpoint or run

    # 2. Again from scratch; the joiner SIGKILLed after epoch 2: process 0 stops at once, in
    # one line; the run FAILED with the reason; the checkpoint kept.
    stage = _stage(zero, tmp_path / "zero2.log", "-f")
    joiner = _join(one, prefix, tmp_path / "one2.log")
    _wait_for(tmp_path / "zero2.log", "epoch 2/6", stage)
    os.killpg(joiner.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert stage.wait(timeout=300) != 0
    assert time.monotonic() - killed < 60
    errors = [line for line in (tmp_path / "zero2.log").read_text().splitlines()
              if line.startswith("train@cnn: error:")]
    assert len(errors) == 1 and "another process stopped answering during epoch" in errors[0]
    assert "the checkpoint of the epochs before is kept" in errors[0]
    failed = _run(zero)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error"].startswith("ProcessesError: cnn: another process stopped")
    assert len(list((zero / ".nnlab/checkpoints").glob("train@cnn.*.npz"))) == 1
    assert not (zero / "models/cnn").exists()

    # 3. Both again: process 0 hands the checkpoint over, both go on from it, in the same
    # MLflow run, to the unstopped history, bit for bit.
    stage = _stage(zero, tmp_path / "zero3.log")
    joiner = _join(one, prefix, tmp_path / "one3.log")
    assert stage.wait(timeout=600) == 0, (tmp_path / "zero3.log").read_text()[-3000:]
    assert joiner.wait(timeout=120) == 0, (tmp_path / "one3.log").read_text()[-3000:]
    assert "train@cnn: resuming after epoch" in (tmp_path / "zero3.log").read_text()
    assert _history(zero, "cnn") == reference
    resumed = _run(zero)
    assert resumed.info.run_id == failed.info.run_id and resumed.info.status == "FINISHED"
    assert not list((zero / ".nnlab/checkpoints").glob("train@cnn.*.npz"))
    assert run(["dvc", "status", "train@cnn"], zero).strip().endswith("up to date.")
