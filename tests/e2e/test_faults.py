"""Faults as a user meets them, with real processes, real signals and real corrupt files.

Every case checks the same four things:
- the exit code;
- a message of at most 2 lines that names the cause;
- no output left behind that looks valid;
- no MLflow run left RUNNING once the next command has run.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.support.e2e import copy_project, git, user_env

pytestmark = pytest.mark.slow

# Lines of `dvc repro` output that are DVC's narration, not a message about the fault.
NARRATION = ("Running stage", "> python", "Stage '", "Verifying", "INFO mlflow", "Updating lock")


@pytest.fixture(scope="module")
def prepared(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained baseline, with numpy_dnn's params changed for a long training
    (which the signal tests stop), committed."""
    project = copy_project(baseline, tmp_path_factory.mktemp("faults") / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["numpy_dnn"].update(epochs=100_000, early_stopping_patience=None)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "long numpy_dnn training configured")
    return project


@pytest.fixture
def project(prepared: Path, tmp_path: Path) -> Path:
    return copy_project(prepared, tmp_path / "project")


def _client(project: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def _runs(project: Path, status: str | None = None) -> list[mlflow.entities.Run]:
    client = _client(project)
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    where = f"attributes.status = '{status}'" if status else ""
    return client.search_runs([experiment.experiment_id], where)


# a training's device line and epoch lines (a log's)
PROGRESS = re.compile(r"^train@\w+: (training on |epoch \d+/\d+  )")


def _messages(output: str) -> list[str]:
    return [line for line in output.strip().splitlines()
            if line.strip() and not line.startswith(NARRATION) and not PROGRESS.match(line)]


def _command(args: list[str], cwd: Path) -> tuple[int, str]:
    result = subprocess.run(args, cwd=cwd, env=user_env(), capture_output=True, text=True,
                            timeout=600)
    return result.returncode, result.stdout + result.stderr


def _stop_training(project: Path, signal_number: int) -> tuple[int, str, str]:
    """Start `dvc repro train@numpy_dnn` in its own process group, wait until its MLflow run
    is RUNNING, and send `signal_number` to the whole group, as a terminal's Ctrl-C or a
    cancelled CI job does. Returns the exit code, the output and the run id."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(["dvc", "repro", "train@numpy_dnn"], cwd=project,
                                   env=user_env(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not (running := _runs(project, "RUNNING")):
                assert process.poll() is None, "training ended before the signal"
                assert time.monotonic() < deadline, "no RUNNING MLflow run appeared"
                time.sleep(0.5)
            time.sleep(1)  # well inside the epochs, not in the run's setup
            os.killpg(process.pid, signal_number)
            code = process.wait(timeout=120)
            # DVC may exit first; the stage finishes its cleanup after it.
            while time.monotonic() < deadline:
                try:
                    os.killpg(process.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        log.seek(0)
        return code, log.read(), running[0].info.run_id


def _nothing_valid_left(project: Path) -> None:
    """No model, no half-saved one, no history.csv (after SIGKILL, which leaves the live
    history.csv: tests/e2e/test_resume_e2e.py)."""
    assert not (project / "models/numpy_dnn").exists()
    assert not (project / "models/numpy_dnn.partial").exists()
    assert not (project / "reports/numpy_dnn/history.csv").exists()


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_training_is_killed_in_mlflow_and_leaves_nothing(
    project: Path, signal_number: int
) -> None:
    code, output, run_id = _stop_training(project, signal_number)
    name = signal.Signals(signal_number).name
    assert code != 0
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    messages = _messages(output)
    assert 1 <= len(messages) <= 2, output
    assert f"train@numpy_dnn: stopped by {name}; its MLflow run is marked KILLED" in messages[0]
    _nothing_valid_left(project)
    run = _client(project).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["nnlab.end_reason"] == f"stopped by {name}"
    assert not _runs(project, "RUNNING")


# A SIGKILLed training: its run ended FAILED by the next stage or `make ui`, and nothing
# valid left: tests/e2e/test_resume_e2e.py, which resumes it.


def test_a_diverging_loss_fails_the_stage_and_saves_no_model(project: Path) -> None:
    # Adam at learning rate 10: the loss blows up to about 69, then the network collapses
    # to a constant prediction at chance level.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["numpy_dnn"].update(learning_rate=10.0, epochs=5, hidden_layers=[64])
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code, output = _command(["dvc", "repro", "train@numpy_dnn"], project)
    assert code != 0
    messages = _messages(output)
    assert len(messages) <= 2 and "Traceback" not in output, messages
    assert messages[0].startswith("train@numpy_dnn: error: numpy_dnn: training loss blew up")
    assert "lower numpy_dnn.learning_rate (now 10), e.g. to 1" in messages[0]
    _nothing_valid_left(project)
    failed = [run for run in _runs(project, "FAILED")
              if run.data.tags.get("dvc.stage") == "train@numpy_dnn"]
    assert len(failed) == 1 and failed[0].data.tags["error"].startswith("DivergenceError")
    assert not _runs(project, "RUNNING")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# (file to damage, command that reads it, what the one line must say)
CORRUPT = {
    "split_npy": ("data/split/train_images.npy", ["stages.train", "logreg"],
                  "data/split/train_images.npy: the NumPy array is truncated or corrupt"),
    "prepared_npy": ("data/prepared/test_labels.npy", ["stages.evaluate", "logreg"],
                     "data/prepared/test_labels.npy: the NumPy array is truncated or corrupt"),
    "classes_json": ("data/prepared/classes.json", ["stages.train", "logreg"],
                     "data/prepared/classes.json: the class list is truncated or corrupt"),
    "history_csv": ("reports/logreg/history.csv", ["stages.evaluate", "logreg"],
                    "reports/logreg/history.csv: the training history is truncated or corrupt"),
    "train_info": ("models/logreg/train_info.json", ["stages.evaluate", "logreg"],
                   "models/logreg/train_info.json: the JSON file is truncated or corrupt"),
    "numpy_model": ("models/numpy_dnn/model.npz",
                    ["nnlab.cli", "predict", "--model", "numpy_dnn", "digit.png"],
                    "models/numpy_dnn/model.npz: the numpy_dnn model is truncated or corrupt"),
    "logreg_model": ("models/logreg/model.npz", ["stages.evaluate", "logreg"],
                     "models/logreg/model.npz: the logreg model is truncated or corrupt"),
    "params": ("params.yaml", ["stages.split"], "params.yaml: not valid YAML"),
}


def _main_in_process(args: list[str], project: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`python -m <module> <argv>` run in this process (the file is real, the process need
    not be): exit code and everything printed."""
    module = importlib.import_module(args[0])
    monkeypatch.chdir(project)
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        module.main(args[1:])
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_corrupt_file_is_one_line_naming_it_and_the_fix(
    project: Path, case: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damaged, args, message = CORRUPT[case]
    if case == "params":
        (project / damaged).write_text("numpy_dnn: [unclosed\n")
    elif case == "history_csv":
        (project / damaged).write_text("epoch,loss\n1,not-a-number\n")
    else:
        _truncate(project / damaged)
    from PIL import Image

    Image.new("L", (8, 8), 200).save(project / "digit.png")
    code, output = _main_in_process(args, project, monkeypatch, capsys)
    lines = output.strip().splitlines()
    assert code == 2, output
    assert len(lines) == 1 and "Traceback" not in output, lines
    assert message in lines[0]
    if case != "params":
        assert "`dvc checkout`" in lines[0] and "`dvc repro`" in lines[0]
    if args[0] == "stages.evaluate":  # nothing half-written that looks like a result
        assert not (project / "reports/logreg/metrics.json").exists()
        assert not (project / "reports/logreg/plots").exists()
    assert not _runs(project, "RUNNING")


@pytest.mark.tensorflow
def test_a_truncated_keras_model_is_one_line_at_predict(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A .keras file cut short (an interrupted copy): not "File not found" about a file that
    # exists, but the file, what is wrong with it and the fix.
    _truncate(project / "models/cnn/model.keras")  # the baseline's trained CNN
    from PIL import Image

    Image.new("L", (8, 8), 200).save(project / "digit.png")
    code, output = _main_in_process(["nnlab.cli", "predict", "--model", "cnn", "digit.png"],
                                    project, monkeypatch, capsys)
    lines = [line for line in output.strip().splitlines() if line.startswith("nnlab")]
    assert code == 2 and "Traceback" not in output, output
    assert len(lines) == 1
    assert "models/cnn/model.keras: the cnn model is truncated or corrupt" in lines[0]
    assert "`dvc checkout`" in lines[0]


def test_a_full_disk_during_training_is_one_line_and_leaves_nothing(project: Path) -> None:
    """Under a file-size limit (the same failure as a full disk: EFBIG, or SQLite's disk I/O
    error) the train stage says which write failed and what to do, in one line."""
    import resource

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["numpy_dnn"]["epochs"] = 3  # the fixture's is a training that never ends
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    result = subprocess.run([sys.executable, "-m", "stages.train", "numpy_dnn"], cwd=project,
                            env=user_env(), capture_output=True, text=True, timeout=600,
                            preexec_fn=limited)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _messages(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith("train@numpy_dnn: error: ") and \
        "free disk space (or raise the file-size limit)" in lines[0], lines
    _nothing_valid_left(project)
    code, output = _command(["dvc", "repro", "train@numpy_dnn"], project)  # room again
    assert code == 0, output[-3000:]
    assert not _runs(project, "RUNNING")


def test_promote_on_a_read_only_store_is_one_line(project: Path) -> None:
    """The project's folder mounted read-only (its own mount namespace: root only)."""
    mounted = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("unshare -m needs root: a read-only mount cannot be made here")
    script = (f"mount --bind {project} {project} && mount -o remount,ro,bind {project} && "
              "nnlab promote --model cnn")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=project,
                            env=user_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "nnlab promote: error: the MLflow store could not be written (attempt to write a "
        "readonly database): make mlflow.db and its folder writable (or point "
        "MLFLOW_TRACKING_URI at another store), then run the command again"], result.stderr
