"""`nnlab sweep`: check the search before anything runs, create or join the study, start K
workers on this machine, watch them (a killed worker's processes and temporary workspace are
cleaned up at once), and print the ranked trials at the end. Ctrl-C or SIGTERM stops the
workers; their trials end FAIL and the same command resumes the study. A worker gets SIGTERM
when its command dies, even by SIGKILL, so none outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from nnlab.core.files import project_root
from nnlab.core.schema import ParamsError
from nnlab.params import MODEL_NAMES
from nnlab.params import read as read_params
from nnlab.search import dvc
from nnlab.search.host_slots import command_slot, die_with_parent
from nnlab.search.parent_run import (
    end_dead_trial_runs,
    end_trial_run,
    ensure_parent_run,
    finish_parent_run,
)
from nnlab.search.space import check_bounds, parse_overrides, parse_spec
from nnlab.search.storage import MAX_RETRY, has_heartbeat, masked, quiet
from nnlab.search.study import (
    SAMPLERS,
    Plan,
    SweepError,
    check_name,
    default_url,
    open_study,
    stack_tracking,
)
from nnlab.search.study_report import study_report, summarize
from nnlab.search.trial import EXP_ATTR, WORKER_ATTR
from nnlab.search.trial_link import PRUNERS, RUN_ATTR
from nnlab.tracking.heartbeat import end_dead_runs

# What the workers get, after Ctrl-C, before they are killed: more than each gives its dvc
STOP_SECONDS = dvc.STOP_SECONDS + 30


@dataclass
class Options:
    """The `nnlab sweep` command line."""

    model: str
    study: str
    samples: list[str]
    trials: int = 20
    workers: int = 1
    storage: str | None = None
    sampler: str | None = None  # tpe, or narrowing when rounds > 1
    pruner: str = "median"
    sets: list[str] = field(default_factory=list)
    rounds: int = 1
    seed: int = 0
    targets: list[str] = field(default_factory=list)
    resume: bool = False
    heartbeat: int = 20


def make_plan(options: Options, root: Path) -> Plan:
    """The study's plan from the command line, every bad input refused in one line first.

    Raises:
        ParamsError: a bad model, count, sampler, pruner, sample, range or --set.
    """
    check_name(options.study)
    if options.model not in MODEL_NAMES:
        raise ParamsError(f"unknown model {options.model!r}; choose one of: "
                          f"{', '.join(MODEL_NAMES)}")
    counts = {"trials": options.trials, "workers": options.workers, "rounds": options.rounds,
              "heartbeat": options.heartbeat}
    if any(value < 1 for value in counts.values()):
        raise ParamsError("--trials, --workers, --rounds and --heartbeat must be at least 1, "
                          "got " + ", ".join(f"{key}={value}" for key, value in counts.items()))
    sampler = options.sampler or ("narrowing" if options.rounds > 1 else "tpe")
    if sampler not in SAMPLERS:
        raise ParamsError(f"--sampler {sampler!r}: choose one of: {', '.join(SAMPLERS)}")
    if options.rounds > 1 and sampler != "narrowing":
        raise ParamsError(f"--rounds {options.rounds} narrows ranges round by round: it needs "
                          "--sampler narrowing")
    if options.pruner not in PRUNERS:
        raise ParamsError(f"--pruner {options.pruner!r}: choose one of: {', '.join(PRUNERS)}")
    if not options.samples:
        raise ParamsError("give at least one --sample, e.g. 'learning_rate=loguniform(1e-4,1e-1)'")
    ranges = [parse_spec(text, options.model) for text in options.samples]
    keys = [item.key for item in ranges]
    if len(set(keys)) != len(keys):
        raise ParamsError(f"--sample: a param is sampled twice: {', '.join(keys)}")
    fixed = parse_overrides(options.sets, options.model)
    base = check_bounds(read_params(root / "params.yaml"), fixed, ranges)
    epochs = getattr(base.model_params(options.model), "epochs", None)
    return Plan(options.model, [str(item) for item in ranges], fixed,
                list(options.targets) or [f"evaluate@{options.model}"], options.trials,
                sampler, options.pruner, options.rounds, options.seed, options.heartbeat,
                base.data.dataset, epochs)


def run_sweep(options: Options, root: Path | None = None,
              report: Callable[[str], None] = print) -> dict[str, Any]:
    """Create or join the study, run K workers here until it has N finished trials, report.

    Raises:
        ParamsError: bad input, before anything runs.
        StorageError: the storage does not answer.
        SweepError: DVC refused, a study with another search, or the workers failed.
        KeyboardInterrupt: Ctrl-C, after the workers stopped and the parent run is KILLED.
    """
    root = root or project_root()
    plan = make_plan(options, root)
    try:
        dvc.baseline_rev(root)
    except dvc.DvcError as error:
        raise SweepError(str(error)) from None
    url = options.storage or default_url(root)
    tracking = stack_tracking(url, root)
    if tracking:
        report(f"The study is in the team stack's storage: its runs go to the stack's MLflow "
               f"server too, {tracking} (from .nnlab/server/env)")
    study, plan = open_study(url, options.study, plan, resume=options.resume)
    parent = ensure_parent_run(study, plan, url)
    end_dead_runs()  # runs a killed process left RUNNING, of any experiment
    report(f"Study {options.study!r} in {masked(url)}: {plan.trials} trials of {plan.model} "
           f"(sampler {plan.sampler}, pruner {plan.pruner}), {options.workers} worker(s) here; "
           f"MLflow parent run {parent}")
    report(f"Watch it: optuna-dashboard {masked(url)}")
    status, finished = "KILLED", 0
    try:
        with command_slot(url, options.study) as slot:
            _watch(_start_workers(url, options, root, slot), study, url, root, report)
        finished = len(study.get_trials(deepcopy=False, states=(
            optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
        status = "FINISHED" if finished >= plan.trials else "FAILED"
    finally:
        summary = summarize(study, plan)
        finish_parent_run(parent, summary, status)
    report("")
    report(study_report(study, plan))
    if status != "FINISHED":
        raise SweepError(f"the workers stopped with {finished} of {plan.trials} trials finished; "
                         "see their lines above")
    return summary


def _start_workers(url: str, options: Options, root: Path,
                   slot: int) -> list[subprocess.Popen[bytes]]:
    # Each worker in its own session: Ctrl-C reaches only this process, which stops the
    # workers in order; and a killed worker's group (dvc, the stage) can be killed with it.
    return [subprocess.Popen([sys.executable, "-m", "nnlab.search.worker", "--storage", url,
                              "--study", options.study, "--index", str(index),
                              "--slot", str(slot)],
                             cwd=root, start_new_session=True, preexec_fn=die_with_parent)
            for index in range(1, options.workers + 1)]


def _watch(workers: Sequence[subprocess.Popen[bytes]], study: optuna.Study, url: str,
           root: Path, report: Callable[[str], None]) -> None:
    """Wait for the workers; clean up after one that a signal killed."""
    running = list(workers)
    try:
        while running:
            for worker in list(running):
                code = worker.poll()
                if code is None:
                    continue
                running.remove(worker)
                if code < 0:
                    _bury(worker, study, url, root, report)
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (nnlab/cli/sweep.py raises it for SIGTERM)
        report("Interrupted: stopping the workers (their trials end FAIL) ...")
        for worker in _stop(running):
            late = f"was still running {STOP_SECONDS:.0f} s after the stop and was killed"
            dead = _end_trials(worker, study, root, f"its sweep worker {late}")
            report(f"worker pid {worker.pid} {late}; its trial(s) {_numbers(dead)} end FAIL")
        raise


def _bury(worker: subprocess.Popen[bytes], study: optuna.Study, url: str, root: Path,
          report: Callable[[str], None]) -> None:
    """A worker killed by a signal: kill what it started, remove its DVC temp workspace and
    end its trial's MLflow run. The trial itself becomes FAIL by heartbeat and is retried by
    a live worker; on a storage without heartbeat (gRPC) that is done here."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)
    name = signal.Signals(-worker.returncode).name
    no_heartbeat = not has_heartbeat(url)
    dead = _end_trials(worker, study, root, "its sweep worker was killed", fail=no_heartbeat,
                       retry=no_heartbeat)
    report(f"worker pid {worker.pid} was killed by {name}; its trial(s) {_numbers(dead)} will "
           "be retried by a live worker (once its heartbeat is overdue)")


def _numbers(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    return ", ".join(str(trial.number) for trial in trials) or "none"


def _end_trials(worker: subprocess.Popen[bytes], study: optuna.Study, root: Path, why: str,
                fail: bool = True, retry: bool = False) -> list[optuna.trial.FrozenTrial]:
    """The RUNNING trials of `worker`, a dead process: their DVC temp workspaces removed and
    MLflow runs ended, and with `fail` the trials FAIL now (else the storage's heartbeat
    fails them, and a live worker retries them), retried as the heartbeat would with
    `retry`."""
    me = f"{socket.gethostname()}:{worker.pid}"
    dead = [trial for trial in study.get_trials(deepcopy=False, states=(
        optuna.trial.TrialState.RUNNING,)) if trial.user_attrs.get(WORKER_ATTR) == me]
    dvc.remove_workspaces(root, [str(t.user_attrs.get(EXP_ATTR)) for t in dead])
    for trial in dead:
        if fail:
            with contextlib.suppress(UpdateFinishedTrialError):  # the heartbeat was first
                study._storage.set_trial_state_values(trial._trial_id,
                                                      optuna.trial.TrialState.FAIL)
                if retry:
                    with quiet():
                        optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY)(
                            study, study._storage.get_trial(trial._trial_id))
        if trial.user_attrs.get(RUN_ATTR):
            end_trial_run(trial.user_attrs[RUN_ATTR], why)
    end_dead_trial_runs(study)
    return dead


def _stop(workers: Sequence[subprocess.Popen[bytes]],
          grace: float = STOP_SECONDS) -> list[subprocess.Popen[bytes]]:
    """SIGINT to each worker's group (worker, dvc, stage: each cleans up; a worker gives its
    dvc dvc.STOP_SECONDS), then SIGKILL to the groups still there; the workers killed."""
    for worker in workers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signal.SIGINT)
    deadline, killed = time.monotonic() + grace, []
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            killed.append(worker)
    return killed
