"""One trial, run by a worker: its params from the sampler, checked by the schema, run as a DVC
experiment named after the study and the trial, scored by its validation accuracy (never
test), and its MLflow run given its final state."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nnlab.core.schema import ParamsError
from nnlab.params import validate
from nnlab.search import dvc
from nnlab.search.parent_run import restored_trial_run, tag_trial_run
from nnlab.search.space import apply_overrides, format_value, suggest
from nnlab.search.study import Plan
from nnlab.search.trial_link import RUN_ATTR, TrialLink

OBJECTIVE = "val.accuracy"  # what the study maximises: validation, never test
ACTIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
EXP_ATTR, WORKER_ATTR, SURPLUS_ATTR = "dvc.exp_name", "nnlab.worker", "nnlab.surplus"
FAILURE_ATTR = "nnlab.failure"  # why the trial's experiment failed (set on TrialFailed)


class TrialFailed(RuntimeError):
    """The trial's experiment failed (the message has the cause and where its log is)."""


class Surplus(RuntimeError):
    """Workers asked for more trials than the study needs at the same moment: the later one
    runs nothing and ends FAIL, tagged nnlab.surplus, so exactly N trials finish."""


def exp_name(study: str, number: int) -> str:
    """`<study>-t007`: the trial's DVC experiment, reproducible by that name."""
    return f"{study}-t{number:03d}"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_surplus(study: optuna.Study, number: int, target: int) -> bool:
    """Whether `target` trials numbered below `number` already finished, run or wait."""
    trials = study.get_trials(deepcopy=False, states=ACTIVE)
    return sum(trial.number < number for trial in trials) >= target


@dataclass
class Objective:
    """The function a worker's `study.optimize` calls for each trial."""

    plan: Plan
    root: Path
    storage: str
    parent_run_id: str | None
    raw: dict[str, Any]  # params.yaml as read at the worker's start
    logs: Path  # one `dvc exp run` log per trial
    report: Callable[[str], None] = print

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except TrialFailed as error:
            trial.set_user_attr(FAILURE_ATTR, str(error)[:2000])
            self.report(f"error: {error}")
            raise

    def _run(self, trial: optuna.Trial) -> float:
        study = trial.study
        if is_surplus(study, trial.number, self.plan.trials):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise Surplus(f"trial {trial.number}: the study already has {self.plan.trials}")
        values = suggest(trial, self.plan.ranges())
        name = exp_name(study.study_name, trial.number)
        for key, attr in {EXP_ATTR: name, WORKER_ATTR: worker_id(), "values": values}.items():
            trial.set_user_attr(key, attr)
        try:
            validate(apply_overrides(self.raw, {**self.plan.fixed, **values}))
        except ParamsError as error:
            raise TrialFailed(f"trial {trial.number}: the schema refuses its params: {error}") \
                from None
        link = TrialLink(self.storage, study.study_name, trial._trial_id, trial.number,
                         self.plan.pruner, self.plan.max_epochs, self.parent_run_id)
        shown = ", ".join(f"{key.split('.')[-1]}={format_value(v)}" for key, v in values.items())
        self.report(f"trial {trial.number} ({name}): {shown}")
        start, log = time.perf_counter(), self.logs / f"{name}.log"
        try:
            baseline = dvc.exp_run(self.root, name, {**self.plan.fixed, **values},
                                   self.plan.targets, link.to_env(), log)
            metrics = dvc.read_metrics(self.root, baseline, name, self.plan.model)
        except dvc.DvcError as error:
            raise TrialFailed(f"trial {trial.number} ({name}) failed: {error}; log: {log}") \
                from None
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        pruned = bool(metrics.get("pruned"))
        value = float(metrics["val"]["accuracy"]) if "accuracy" in metrics.get("val", {}) \
            else None
        self._tag_run(trial, "PRUNED" if pruned else "COMPLETE", value, values, metrics)
        if pruned:
            raise optuna.TrialPruned(f"pruned after epoch {metrics.get('epochs')}")
        if value is None:
            raise TrialFailed(f"trial {trial.number} ({name}): its metrics have no {OBJECTIVE}")
        return value

    def _tag_run(self, trial: optuna.Trial, state: str, value: float | None,
                 values: dict[str, Any], metrics: dict[str, Any]) -> None:
        # The stage recorded its run in the study (link.record_run); none if it never ran.
        run_id = trial.storage.get_trial(trial._trial_id).user_attrs.get(RUN_ATTR)
        if run_id is None and self.parent_run_id:
            run_id = restored_trial_run(trial.study.study_name, trial.number,
                                        self.parent_run_id, self.plan, values, metrics)
            trial.set_user_attr(RUN_ATTR, run_id)
        if run_id:
            tag_trial_run(str(run_id), state, value)
