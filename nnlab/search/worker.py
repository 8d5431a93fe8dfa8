"""A sweep worker: `python -m nnlab.search.worker --storage URL --study NAME`, started by
`nnlab sweep --workers K` (K of them per machine). It runs the study's trials one at a time
until the study has its N finished trials, on whichever machine the others run.

Crash safety is Optuna's: the worker's storage sends a heartbeat while a trial runs; a trial
whose worker went silent (SIGKILL, a lost machine) is failed by the next live worker that
asks for a trial, and RetryHeartbeatStaleTrialCallback queues a copy of it, which that worker
runs. So a worker that sees the last trials running elsewhere waits for them instead of
leaving: one of them may die.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nnlab.core.files import project_root
from nnlab.params import read as read_params
from nnlab.search import dvc
from nnlab.search.host_slots import stop_own_group
from nnlab.search.parent_run import end_dead_trial_runs
from nnlab.search.storage import StorageError, quiet
from nnlab.search.study import (
    PARENT_ATTR,
    SweepError,
    make_sampler,
    open_study,
    worker_seed,
)
from nnlab.search.trial import (
    EXP_ATTR,
    FAILURE_ATTR,
    SURPLUS_ATTR,
    WORKER_ATTR,
    Objective,
    Surplus,
    TrialFailed,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
WAIT_SECONDS = 2.0  # between looks at a study whose last trials run elsewhere
LOGS = Path(".nnlab/sweep")  # each trial's `dvc exp run` output, per study


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state; FAIL counts only trials whose experiment failed (not surplus ones,
    not interrupted ones, not heartbeat-failed ones, which are retried)."""
    found = {state.name: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        if trial.state != TrialState.FAIL or FAILURE_ATTR in trial.user_attrs:
            found[trial.state.name] += 1
    return found


def clean_up_dead_trials(study: optuna.Study, root: Path, seen: set[int]) -> None:
    """What killed trials left on this machine: their DVC temp workspaces and RUNNING
    MLflow runs (each FAIL trial is looked at once: `seen`)."""
    failed = [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if trial.number not in seen and EXP_ATTR in trial.user_attrs]
    dvc.remove_workspaces(root, [str(trial.user_attrs[EXP_ATTR]) for trial in failed])
    end_dead_trial_runs(study, seen)


def work(url: str, name: str, index: int = 1, root: Path | None = None,
         report: Callable[[str], None] = print, slot: int = 0) -> int:
    """Run trials of the study until it has its N finished ones; how many this worker ran."""
    root = root or project_root()
    study, plan = open_study(url, name, retry=True)
    # Seeded from --seed, differently for each worker: equal seeds would propose equal params.
    study.sampler = make_sampler(plan, worker_seed(plan.seed, socket.gethostname(), slot,
                                                   index))
    raw = read_params(root / "params.yaml")
    objective = Objective(plan, root, url, study.user_attrs.get(PARENT_ATTR), raw,
                          root / LOGS / name, lambda line: report(f"[worker {index}] {line}"))
    ran, seen, waiting = 0, set[int](), ""
    while True:
        with quiet():
            optuna.storages.fail_stale_trials(study)  # heartbeat: a dead worker's trial -> FAIL
        clean_up_dead_trials(study, root, seen)
        found = counts(study)
        finished = found["COMPLETE"] + found["PRUNED"]
        if finished >= plan.trials:
            return ran
        if found["FAIL"] >= max(3, plan.trials):
            raise SweepError(f"{found['FAIL']} trials of study {name!r} failed, more than it "
                             f"needs finished ({plan.trials}); see the logs in {LOGS / name}")
        if not found["WAITING"] and finished + found["RUNNING"] >= plan.trials:
            # The last trials run elsewhere; one may yet die and need running again.
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            line = ("waiting for " + ", ".join(
                f"trial {t.number} ({t.user_attrs.get(WORKER_ATTR, '?')})" for t in running)
                + f" to finish: {finished} of {plan.trials} finished")
            if line != waiting:
                report(f"[worker {index}] {line}")
                waiting = line
            time.sleep(WAIT_SECONDS)
            continue
        # A WAITING trial (a retry, or one enqueued by hand) is what `ask` hands out first.
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed, Surplus),
                           callbacks=[_progress(plan.trials, report, index)],
                           gc_after_trial=False)
        except KeyboardInterrupt:  # Optuna has marked the trial FAIL: end its run, and
            clean_up_dead_trials(study, root, seen)  # remove a workspace dvc left behind
            raise
        ran += 1


def _progress(target: int, report: Callable[[str], None], index: int) -> Callable[..., None]:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.user_attrs.get(SURPLUS_ATTR):
            return
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        value = f" val.accuracy {trial.value:.4f}" if trial.value is not None else ""
        seconds = trial.user_attrs.get("seconds")
        took = f" in {seconds:.1f} s" if seconds else ""
        report(f"[worker {index}] trial {trial.number} {trial.state.name}{value}{took} "
               f"({finished}/{target} finished)")
    return callback


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnlab.search.worker")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--index", type=int, default=1, help="this worker's number, for logs")
    parser.add_argument("--slot", type=int, default=0, help="its sweep command's slot on this "
                        "host (nnlab.search.host_slots.command_slot), for the sampler's seed")
    args = parser.parse_args(argv)
    # SIGTERM (its sweep command died, or `kill`) unwinds the whole group like Ctrl-C:
    # Optuna marks the running trial FAIL, the stage its run KILLED, the study resumes.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop_own_group)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        work(args.storage, args.study, args.index,
             report=lambda line: print(line, flush=True), slot=args.slot)
    except (StorageError, SweepError) as error:
        print(f"[worker {args.index}] error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"[worker {args.index}] interrupted: its trial is marked FAIL; the study "
              "resumes with the same `nnlab sweep` command", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
