"""`nnlab sweep` with real processes: two workers sharing one SQLite study, a worker killed with
SIGKILL mid-trial, a pruned trial, `--report` and `--apply-best`. Each trial is a real
`dvc exp run --temp` whose stages log to a real MLflow store. (Two workers on the team
stack's PostgreSQL: tests/e2e/test_team_e2e.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import optuna
import psutil
import pytest
import yaml

from nnlab.search import dvc, runner
from nnlab.search.study import SweepError, open_study
from tests.support.e2e import copy_project, git, make_project, run, user_env

pytestmark = pytest.mark.slow
SAMPLE = "learning_rate=loguniform(1e-3,1e-1)"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny numpy_dnn with its data stages run and committed: a trial only trains and
    evaluates."""
    path = make_project(tmp_path_factory.mktemp("sweep") / "project", {
        "numpy_dnn": {"hidden_layers": [16], "epochs": 3, "early_stopping_patience": None}})
    run(["dvc", "repro", "data_report"], path)  # split, and the report every trial would run
    git(path, "add", "-A")
    git(path, "commit", "-qm", "data stages run")
    return path


def _sweep(project: Path, study: str, *args: str, check: bool = True) -> str:
    return run(["nnlab", "sweep", "--study", study, "--model", "numpy_dnn", *args], project,
               check=check)


def _study(project: Path, name: str) -> optuna.Study:
    return open_study(f"sqlite:///{project / '.nnlab/optuna.db'}", name)[0]


def _running(project: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's RUNNING trials whose train stage has opened its MLflow run (none while
    the sweep is still creating the study)."""
    try:
        study = _study(project, name)
    except SweepError:
        return []
    return [trial for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            if "mlflow_run_id" in trial.user_attrs]


def _runs(project: Path, study: str) -> list[Any]:
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id],
                                   f"tags.`nnlab.study` = '{study}'", max_results=1000))


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                    optuna.trial.TrialState.PRUNED))


def test_two_workers_share_one_study_of_dvc_experiments_and_nested_runs(
        project: Path, tmp_path: Path) -> None:
    project = copy_project(project, tmp_path / "project")
    output = _sweep(project, "duo", "--trials", "4", "--workers", "2", "--pruner", "none",
                    "--sample", SAMPLE)
    study = _study(project, "duo")
    finished = _finished(study)
    assert len(finished) == 4 and len(study.trials) == 4  # exactly N, nothing surplus
    assert len({trial.user_attrs["nnlab.worker"] for trial in finished}) == 2  # both worked
    baseline = dvc.baseline_rev(project)
    every = _runs(project, "duo")
    (parent,) = [run for run in every if run.data.tags.get("nnlab.kind") == "study"]
    runs = {run.data.tags["nnlab.trial"]: run for run in every if run is not parent}
    assert len(runs) == 4
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best.val.accuracy"] == max(t.value or 0 for t in finished)
    for trial in finished:
        name = trial.user_attrs["dvc.exp_name"]
        assert name == f"duo-t{trial.number:03d}"
        metrics = dvc.read_metrics(project, baseline, name, "numpy_dnn")
        assert trial.value == metrics["val"]["accuracy"]  # validation, never test
        assert "accuracy" in metrics["test"]  # evaluated on test too, just never used
        child = runs[str(trial.number)]
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["dvc.exp_name"] == name
        assert child.data.tags["nnlab.trial_state"] == "COMPLETE"
        assert float(child.data.tags["nnlab.value"]) == pytest.approx(trial.value, rel=1e-5)
        assert float(child.data.params["learning_rate"]) == \
            trial.user_attrs["values"]["numpy_dnn.learning_rate"]
        assert child.data.metrics["val.accuracy"] == pytest.approx(trial.value)
    assert dvc.leftover_workspaces(project) == []
    assert " INFO " not in output, output  # none of MLflow's store or model logging
    ranked = sorted(finished, key=lambda t: -(t.value or 0))
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank  trial"))
    assert [line.split()[1] for line in lines[header + 1: header + 5]] == \
        [str(t.number) for t in ranked]

    report = run(["nnlab", "sweep", "--study", "duo", "--report"], project)
    assert "Study 'duo': numpy_dnn, 4 trials wanted; 4 complete" in report
    best = ranked[0]
    applied = run(["nnlab", "sweep", "--study", "duo", "--apply-best"], project)
    assert f"Applied experiment duo-t{best.number:03d}" in applied
    # this project trained numpy_dnn only (in the trials): the other models had nothing
    assert "note: models/" in applied and "were never trained in this project" in applied
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["numpy_dnn"]["learning_rate"] == \
        best.user_attrs["values"]["numpy_dnn.learning_rate"]
    metrics = json.loads((project / "reports/numpy_dnn/metrics.json").read_text())
    assert metrics["val"]["accuracy"] == best.value  # its trained outputs came along


def _wait_for(condition: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"waited {seconds} s for {what}")


def test_a_worker_killed_mid_trial_is_retried_and_leaves_nothing_behind(
        project: Path, tmp_path: Path) -> None:
    project = copy_project(project, tmp_path / "project")
    log = (tmp_path / "sweep.log").open("w")
    sweep = subprocess.Popen(
        ["nnlab", "sweep", "--study", "kill", "--model", "numpy_dnn", "--trials", "3",
         "--workers", "2", "--heartbeat", "2", "--pruner", "none", "--sample", SAMPLE,
         "--set", "epochs=60"],
        cwd=project, env=user_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        victim = _wait_for(lambda: (_running(project, "kill") or [None])[0], 300,
                           "a trial whose stage logs to MLflow")
        pid = int(victim.user_attrs["nnlab.worker"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        assert sweep.wait(timeout=900) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    finally:
        if sweep.poll() is None:
            sweep.kill()
    output = (tmp_path / "sweep.log").read_text()
    assert f"worker pid {pid} was killed by SIGKILL; its trial(s) {victim.number}" in output
    study = _study(project, "kill")
    assert len(_finished(study)) == 3
    killed = study.trials[victim.number]
    assert killed.state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == killed.params  # the same params, run again
    runs = _runs(project, "kill")
    assert not [run for run in runs if run.info.status == "RUNNING"]
    dead = next(run for run in runs if run.info.run_id == killed.user_attrs["mlflow_run_id"])
    assert dead.info.status == "KILLED"
    assert dvc.leftover_workspaces(project) == []
    name = killed.user_attrs["dvc.exp_name"]
    assert not [p for p in psutil.process_iter(["cmdline"])
                if name in " ".join(p.info["cmdline"] or [])]
    assert not dvc.has_experiment(project, name)


def test_a_trial_that_lags_is_pruned_in_optuna_dvc_and_mlflow(
        project: Path, tmp_path: Path) -> None:
    project = copy_project(project, tmp_path / "project")
    args = ["--trials", "5", "--pruner", "median", "--sample",
            "learning_rate=loguniform(1e-7,1e-1)"]
    options = runner.Options("numpy_dnn", "prune", [args[-1]], trials=5, pruner="median")
    url = f"sqlite:///{project / '.nnlab/optuna.db'}"
    study, _ = open_study(url, "prune", runner.make_plan(options, project))
    # Four trials that learned (as an earlier sweep of this study left them: each epoch's
    # val_accuracy reported), then one whose learning rate is too small to learn in 3
    # epochs: the median pruner stops it after an epoch.
    rate = optuna.distributions.FloatDistribution(1e-7, 1e-1, log=True)
    for learned in (0.01, 0.02, 0.015, 0.03):
        study.add_trial(optuna.trial.create_trial(
            params={"numpy_dnn.learning_rate": learned},
            distributions={"numpy_dnn.learning_rate": rate}, value=0.9,
            intermediate_values={1: 0.8, 2: 0.85, 3: 0.9}))
    study.enqueue_trial({"numpy_dnn.learning_rate": 1e-7})
    output = _sweep(project, "prune", *args)
    study = _study(project, "prune")
    states = [trial.state for trial in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 4 + [optuna.trial.TrialState.PRUNED]
    pruned = study.trials[4]
    assert "trial 4 PRUNED" in output
    name = pruned.user_attrs["dvc.exp_name"]
    baseline = dvc.baseline_rev(project)
    metrics = dvc.read_metrics(project, baseline, name, "numpy_dnn")
    assert metrics["pruned"] is True and "test" not in metrics
    assert metrics["epochs"] < 3 and list(pruned.intermediate_values) == \
        list(range(1, metrics["epochs"] + 1))
    lock = yaml.safe_load(subprocess.run(
        ["git", "show", f"{dvc.exp_ref(baseline, name)}:dvc.lock"], cwd=project,
        capture_output=True, text=True, check=True).stdout)
    (model_out,) = [out for out in lock["stages"]["train@numpy_dnn"]["outs"]
                    if out["path"] == "models/numpy_dnn"]
    assert model_out["nfiles"] == 1  # train_info.json only: no weights that look trained
    run_ = next(r for r in _runs(project, "prune") if r.data.tags.get("nnlab.trial") == "4")
    assert run_.info.status == "KILLED"
    assert run_.data.tags["nnlab.trial_state"] == "PRUNED"
    assert run_.data.tags["nnlab.end_reason"] == "pruned"


def test_joining_needs_the_same_search_and_a_reachable_storage(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nnlab.cli", "sweep", "--study", "x", "--model", "numpy_dnn",
         "--sample", SAMPLE, "--storage", "postgresql+psycopg://u:pw@127.0.0.1:9/optuna"],
        cwd=project, env=user_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("nnlab sweep: error: Optuna storage postgresql+psycopg://u:***@")
    assert "make server" in line


def _stop_sweep(project: Path, command: list[str], log_path: Path, how: str) -> str:
    """Start the sweep, wait for its two trials to train, stop it `how` (Ctrl-C, or SIGTERM to
    its process group as `kill` or `timeout` send it); its output."""
    expected = {"SIGINT": 130, "SIGTERM": 143}[how]
    with log_path.open("w") as log:
        # SIGINT as a terminal's Ctrl-C: a pytest started in the background by a script
        # ignores SIGINT, and a child would inherit that (Python then installs no
        # KeyboardInterrupt handler).
        sweep = subprocess.Popen(command, cwd=project, env=user_env(), stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(lambda: len(_running(project, "cc")) == 2, 300,
                  "two trials whose stages log to MLflow")
        if how == "SIGINT":
            sweep.send_signal(signal.SIGINT)
        else:
            os.killpg(sweep.pid, signal.SIGTERM)
        assert sweep.wait(timeout=300) == expected
    finally:
        if sweep.poll() is None:
            sweep.kill()
    return log_path.read_text()


def _workers_of(project: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        if "nnlab.search.worker" in " ".join(process.info["cmdline"] or []) \
                and process.info["cwd"] == str(project):
            found.append(process)
    return found


def test_ctrl_c_or_sigterm_fails_the_running_trials_and_the_same_command_resumes(
        project: Path, tmp_path: Path) -> None:
    project = copy_project(project, tmp_path / "project")
    command = ["nnlab", "sweep", "--study", "cc", "--model", "numpy_dnn", "--trials", "2",
               "--workers", "2", "--pruner", "none", "--sample", SAMPLE,
               "--set", "epochs=2000"]
    for round_number, how in enumerate(("SIGINT", "SIGTERM"), start=1):
        output = _stop_sweep(project, command, tmp_path / f"sweep-{how}.log", how)
        assert f"nnlab sweep: stopped by {how}; the study keeps its finished trials" in output
        assert "Traceback" not in output
        assert _workers_of(project) == []  # no worker outlives its sweep
        study = _study(project, "cc")
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * (
            2 * round_number)
        runs = _runs(project, "cc")
        # The trials' runs KILLED, and the study's one parent run (reopened by round 2).
        assert {run.info.status for run in runs} == {"KILLED"}
        assert len(runs) == 2 * round_number + 1
        assert dvc.leftover_workspaces(project) == []
    run(command, project)  # the same command resumes it
    study = _study(project, "cc")
    assert [t.state.name for t in study.trials] == ["FAIL"] * 4 + ["COMPLETE"] * 2
    assert [run.info.status for run in _runs(project, "cc")].count("FINISHED") == 3
