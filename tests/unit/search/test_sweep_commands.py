"""What ties sweep commands together: one parent run per study whoever comes first, distinct
seeds for distinct commands of one host, and workers that die with their command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import optuna
import psutil
import pytest

from nnlab.search.host_slots import command_slot
from nnlab.search.parent_run import (
    KIND_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    end_dead_trial_runs,
    ensure_parent_run,
)
from nnlab.search.study import PARENT_ATTR, Plan, open_study, worker_seed
from nnlab.search.trial_link import RUN_ATTR
from tests.support.helpers import ROOT


def _study(tmp_path: Path) -> tuple[optuna.Study, Plan, str]:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    plan = Plan("numpy_dnn", ["numpy_dnn.learning_rate=loguniform(0.001,0.1)"])
    study, plan = open_study(url, "one", plan)
    return study, plan, url


def _parents(name: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    query = f"tags.`{KIND_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{name}'"
    return list(client.search_runs([experiment.experiment_id], query))


def test_every_command_finds_the_one_parent_run(mlflow_store: str, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(mlflow_store)
    study, plan, url = _study(tmp_path)
    first = ensure_parent_run(study, plan, url)
    mlflow.MlflowClient().set_terminated(first, "KILLED")
    assert ensure_parent_run(study, plan, url) == first  # the next command reopens it
    assert mlflow.MlflowClient().get_run(first).info.status == "RUNNING"
    # A command that cannot read the study's record of it (another machine, a store
    # switched and back) finds it by its tags.
    study.set_user_attr(PARENT_ATTR, "0" * 32)
    again, _ = open_study(url, "one")
    assert ensure_parent_run(again, plan, url) == first
    assert again.user_attrs[PARENT_ATTR] == first
    assert [run.info.run_id for run in _parents("one")] == [first]


def test_two_parents_made_at_once_become_the_older_one(mlflow_store: str,
                                                       tmp_path: Path) -> None:
    mlflow.set_tracking_uri(mlflow_store)
    study, plan, url = _study(tmp_path)
    older = ensure_parent_run(study, plan, url)
    client = mlflow.MlflowClient()
    # Another command's run, made at the same moment, with a later start.
    late = client.create_run(client.get_run(older).info.experiment_id,
                             start_time=client.get_run(older).info.start_time + 5,
                             tags={KIND_TAG: "study", STUDY_TAG: "one"}).info.run_id
    assert ensure_parent_run(study, plan, url) == older
    assert late in {run.info.run_id for run in _parents("one")}  # not ours to delete


def test_a_lost_trials_run_is_ended_even_when_its_id_never_reached_the_study(
        mlflow_store: str, tmp_path: Path) -> None:
    # Machine B died after its stage opened the trial's run, before the run's id reached the
    # study: the trial is FAIL by heartbeat, its run found by its tags and KILLED.
    mlflow.set_tracking_uri(mlflow_store)
    study, plan, url = _study(tmp_path)
    parent = ensure_parent_run(study, plan, url)
    client = mlflow.MlflowClient()
    experiment = client.get_run(parent).info.experiment_id

    def trial_run(study_name: str, number: int) -> str:
        return client.create_run(experiment, tags={
            STUDY_TAG: study_name, TRIAL_TAG: str(number), "mlflow.parentRunId": parent,
        }).info.run_id

    recorded, unrecorded = study.ask(), study.ask()
    running_elsewhere = study.ask()
    recorded.set_user_attr(RUN_ATTR, trial_run("one", recorded.number))
    lost = trial_run("one", unrecorded.number)
    alive = trial_run("one", running_elsewhere.number)
    other_study = trial_run("two", unrecorded.number)
    for trial in (recorded, unrecorded):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    seen: set[int] = set()
    ended = end_dead_trial_runs(study, seen)
    assert sorted(ended) == sorted([recorded.user_attrs[RUN_ATTR], lost])
    run = client.get_run(lost)
    assert run.info.status == "KILLED" and run.data.tags["nnlab.trial_state"] == "FAIL"
    assert run.data.tags["nnlab.end_reason"] == "its sweep worker stopped mid-trial"
    for untouched in (alive, other_study, parent):
        assert client.get_run(untouched).info.status == "RUNNING"
    assert end_dead_trial_runs(study, seen) == []  # each FAIL trial is looked at once


def test_commands_on_one_host_hold_distinct_slots_and_the_lowest_free_one(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with command_slot(url, "s") as first:
        with command_slot(url, "s") as second, command_slot(url, "other") as other:
            assert (first, second, other) == (0, 1, 0)
        with command_slot(url, "s") as third:
            assert third == 1
    with command_slot(url, "s") as alone:
        assert alone == 0  # the same command on its own: the same seeds again
    seeds = {worker_seed(0, "host", slot, index) for slot in (0, 1) for index in (1, 2)}
    assert len(seeds) == 4


def test_a_slot_is_held_by_a_live_process_and_freed_when_it_dies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from nnlab.search.host_slots import command_slot
        with command_slot({url!r}, "s") as slot:
            print(slot, flush=True)
            time.sleep(60)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "0"
        with command_slot(url, "s") as slot:
            assert slot == 1
    finally:
        holder.kill()
        holder.wait()
    with command_slot(url, "s") as slot:
        assert slot == 0


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_gets_sigterm_when_its_command_is_killed(tmp_path: Path) -> None:
    """The command is SIGKILLed (it cannot stop its workers): the worker still stops."""
    marker = tmp_path / "stopped"
    command = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        from nnlab.search.host_slots import die_with_parent
        child = subprocess.Popen([sys.executable, "-c", '''
        import signal, time, pathlib
        def stop(number, frame):
            pathlib.Path({str(marker)!r}).write_text(signal.Signals(number).name)
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(60)
        '''], start_new_session=True, preexec_fn=die_with_parent)
        print(child.pid, flush=True)
        time.sleep(60)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert command.stdout is not None
    # Both print to the same pipe: the child's pid, and "ready" once its handler is set.
    lines = {command.stdout.readline().strip() for _ in range(2)}
    assert "ready" in lines
    child = psutil.Process(int(next(line for line in lines if line != "ready")))
    try:
        os.kill(command.pid, signal.SIGKILL)
        command.wait()
        child.wait(timeout=30)
        assert marker.read_text() == "SIGTERM"
    finally:
        if child.is_running():
            child.kill()


@pytest.mark.slow  # waits out the 10 s grace: `make test` only
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # trials asked by hand
def test_a_worker_that_outlives_the_stop_grace_is_killed_and_its_trial_ends_fail(
        mlflow_store: str, tmp_path: Path) -> None:
    """Ctrl-C: a worker still there after the grace (here one that ignores SIGINT) is
    SIGKILLed, and its RUNNING trial ends FAIL and its run KILLED at once, not left RUNNING
    for the heartbeat."""
    import socket

    from nnlab.search import runner
    from nnlab.search.trial import WORKER_ATTR
    from nnlab.search.trial_link import RUN_ATTR

    mlflow.set_tracking_uri(mlflow_store)
    study, _, _ = _study(tmp_path)
    worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(120)
        """)], start_new_session=True, stdout=subprocess.PIPE, text=True)
    # Polite as a sweep worker is (nnlab/search/worker.py): it sets Python's SIGINT handler
    # itself, since a pytest started in the background by a script inherits SIGINT ignored.
    polite = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("ready", flush=True)
        time.sleep(120)
        """)], start_new_session=True, stdout=subprocess.PIPE, text=True)
    # Both are running their code before the stop: on a loaded machine a Python that is still
    # starting can take longer than the grace to reach its SIGINT handler.
    for process in (worker, polite):
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    client, trials = mlflow.MlflowClient(), []
    experiment = client.create_experiment("sweep")
    for process in (worker, polite):  # a trial of each, as a worker's objective marks it
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{process.pid}")
        trial.set_user_attr(RUN_ATTR, client.create_run(experiment).info.run_id)
        trials.append((trial, trial.user_attrs[RUN_ATTR]))
    try:
        assert runner._stop([polite, worker], grace=10) == [worker]  # polite: SIGINT ends it,
        # at once on a quiet machine; 10 s leaves room for a loaded one (3 s once did not)
    finally:
        for process in (worker, polite):
            if process.poll() is None:
                process.kill()
    assert worker.returncode == -signal.SIGKILL and polite.returncode == -signal.SIGINT
    runner._end_trials(worker, study, tmp_path, "its sweep worker was killed")
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {trials[0][0].number: optuna.trial.TrialState.FAIL,
                      trials[1][0].number: optuna.trial.TrialState.RUNNING}
    assert client.get_run(trials[0][1]).info.status == "KILLED"
    assert client.get_run(trials[1][1]).info.status == "RUNNING"


def test_a_command_logging_to_another_store_than_the_studys_is_refused(
        mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's split study: one command on the study's MLflow store, a second one on
    another (its env file not sourced). The second is refused in one line, and the study
    keeps one parent run, in one store."""
    from nnlab.search.study import SweepError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    mlflow.set_tracking_uri(mlflow_store)
    study, plan, url = _study(tmp_path)
    first = ensure_parent_run(study, plan, url)
    other = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    (tmp_path / "other").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    joined, _ = open_study(url, "one")
    with pytest.raises(SweepError) as error:
        ensure_parent_run(joined, plan, url)
    message = str(error.value)
    assert "\n" not in message and message.startswith(
        f"study 'one' logs its runs to another MLflow store (its parent run {first} is not in "
        f"{other}): source the team stack's env file (.nnlab/server/env"), message
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    assert ensure_parent_run(joined, plan, url) == first
    assert [run.info.run_id for run in _parents("one")] == [first]


def test_the_stacks_storage_brings_the_stacks_mlflow_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its env file sourced, a sweep on the team stack's Optuna storage logs to the
    stack's MLflow server (from .nnlab/server/env), not to the local mlflow.db; with
    MLFLOW_TRACKING_URI set, or another storage, nothing changes."""
    from nnlab.search import study as study_module

    stack = "postgresql+psycopg://nnlab:pw@127.0.0.1:5433/_optuna"
    monkeypatch.setattr(study_module, "_team_stack_url", lambda root: stack)
    (tmp_path / ".nnlab" / "server").mkdir(parents=True)
    (tmp_path / ".nnlab" / "server" / "env").write_text(
        "# Written by `nnlab server start`\nexport MLFLOW_TRACKING_URI=http://127.0.0.1:5000\n"
        "export MLFLOW_TRACKING_USERNAME=admin\nexport MLFLOW_TRACKING_PASSWORD=s3cret\n"
        f"export NNLAB_OPTUNA_STORAGE={stack}\n")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)  # and unset again after the test
    assert study_module.stack_tracking("sqlite:///x.db", tmp_path) is None
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert study_module.stack_tracking(stack, tmp_path) == "http://127.0.0.1:5000"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert study_module.stack_tracking(stack, tmp_path) is None
