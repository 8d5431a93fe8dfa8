"""The MLflow side of a study: one parent run per study (shared by every worker on every
machine, its id kept in the study), each trial's run nested under it and tagged with the
trial's state and value, and no run left RUNNING by a killed trial."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import optuna

from nnlab.search.storage import masked
from nnlab.search.study import PARENT_ATTR, Plan, SweepError
from nnlab.search.trial_link import RUN_ATTR

KIND_TAG, STUDY_TAG, TRIAL_TAG = "nnlab.kind", "nnlab.study", "nnlab.trial"
STATE_TAG, VALUE_TAG = "nnlab.trial_state", "nnlab.value"


def _client() -> Any:
    import mlflow

    from nnlab.tracking import mlflow_runs

    return mlflow.MlflowClient(mlflow_runs.tracking_uri())


def ensure_parent_run(study: optuna.Study, plan: Plan, url: str) -> str:
    """The study's one parent run, whichever command and machine comes first: found by its
    tags (nnlab.kind "study", nnlab.study NAME) in the tracking store, made if there is none,
    and reopened (RUNNING). Two commands that make one at the same moment both keep the
    older one; the other is deleted. Its id is kept in the study for the workers."""
    from nnlab.tracking import mlflow_runs

    experiment_id = mlflow_runs.setup(plan.experiment)  # makes the store, under its lock, quietly
    client = _client()
    found = _parent_runs(client, experiment_id, study.study_name)
    made = None
    recorded = study.user_attrs.get(PARENT_ATTR)
    if not found and recorded and not _exists(client, str(recorded)):
        # The study's parent run is in another MLflow store: a second parent here would
        # split the study's runs between two stores.
        raise SweepError(
            f"study {study.study_name!r} logs its runs to another MLflow store (its parent run "
            f"{recorded} is not in {mlflow_runs.tracking_uri()}): source the team stack's env "
            "file (.nnlab/server/env, or the copy you were given) so that MLFLOW_TRACKING_URI "
            "is the study's server, or sweep with another --study")
    if not found:
        made = client.create_run(experiment_id, run_name=f"study-{study.study_name}", tags={
            KIND_TAG: "study", STUDY_TAG: study.study_name, "model": plan.model})
        _log_plan(client, made.info.run_id, plan, url)
        found = _parent_runs(client, experiment_id, study.study_name)
    winner = found[0].info.run_id
    if made is not None and made.info.run_id != winner:  # another command made one too
        client.delete_run(made.info.run_id)
    if found[0].info.status != "RUNNING":
        client.update_run(winner, status="RUNNING")
    if study.user_attrs.get(PARENT_ATTR) != winner:
        study.set_user_attr(PARENT_ATTR, winner)
    return str(winner)


def _exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _parent_runs(client: Any, experiment_id: str, name: str) -> list[Any]:
    """The study's parent runs, the oldest first (start time, then id: every machine orders
    them alike)."""
    runs = client.search_runs([experiment_id], f"tags.`{KIND_TAG}` = 'study' and "
                              f"tags.`{STUDY_TAG}` = '{name}'", max_results=100)
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def _log_plan(client: Any, run_id: str, plan: Plan, url: str) -> None:
    from nnlab.tracking import mlflow_runs

    params = {"model": plan.model, "trials": plan.trials, "sampler": plan.sampler,
              "pruner": plan.pruner, "rounds": plan.rounds, "seed": plan.seed,
              "samples": " ".join(plan.space), "storage": masked(url),
              "set": " ".join(f"{k}={v}" for k, v in plan.fixed.items()),
              "targets": " ".join(plan.targets)}
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[: mlflow_runs.MAX_PARAM_LENGTH])


def tag_trial_run(run_id: str, state: str, value: float | None) -> None:
    """The trial's final state and value on its run (the stage made it and nested it)."""
    client = _client()
    client.set_tag(run_id, STATE_TAG, state)
    if value is not None:
        client.set_tag(run_id, VALUE_TAG, f"{value:.6g}")


def restored_trial_run(study: str, number: int, parent_id: str, plan: Plan,
                       values: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """A run for a trial that DVC restored from its run-cache (an earlier trial had the same
    params, so no stage ran and none logged): the trial still gets its child run."""
    from nnlab.tracking import mlflow_runs

    experiment_id = mlflow_runs.setup(plan.experiment)  # makes the store, under its lock, quietly
    client = _client()
    run = client.create_run(experiment_id, run_name=plan.model, tags={
        "mlflow.parentRunId": parent_id, STUDY_TAG: study, TRIAL_TAG: str(number),
        "model": plan.model, "nnlab.restored": "DVC run-cache: same params as an earlier run"})
    for key, value in values.items():
        client.log_param(run.info.run_id, key.removeprefix(f"{plan.model}."), str(value))
    for split in ("val", "test"):
        for key, value in (metrics.get(split) or {}).items():
            client.log_metric(run.info.run_id, f"{split}.{key}", float(value))
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)


def end_trial_run(run_id: str, reason: str) -> bool:
    """End a trial's run that nothing else will end (its worker is gone): KILLED, tagged
    nnlab.trial_state FAIL and nnlab.end_reason. False if it had already ended as FAILED or
    KILLED, or was tagged with its trial's state, or is not in the store."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        run = client.get_run(run_id)
        if STATE_TAG in run.data.tags or run.info.status in ("FAILED", "KILLED"):
            return False
        client.set_tag(run_id, "nnlab.end_reason", reason)
        client.set_tag(run_id, STATE_TAG, "FAIL")
        client.set_terminated(run_id, "KILLED")
        return True
    except MlflowException:
        return False


def end_dead_trial_runs(study: optuna.Study, seen: set[int] | None = None) -> list[str]:
    """End the run of every FAIL trial (end_trial_run): its worker was killed or interrupted,
    or its machine lost, either while the run was RUNNING or after the train stage had
    FINISHED it, before the trial's experiment was complete. A trial whose run id never
    reached the study (its machine died first) has its run found by its tags. Trials in
    `seen` are skipped; the ones looked at now are added. The run ids ended."""
    seen = set() if seen is None else seen
    ended, unrecorded = [], []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if trial.number in seen:
            continue
        seen.add(trial.number)
        run_id = trial.user_attrs.get(RUN_ATTR)
        if not run_id:
            unrecorded.append(trial.number)
        elif end_trial_run(run_id, "its sweep worker stopped mid-trial"):
            ended.append(run_id)
    for run_id in _running_trial_runs(study, unrecorded):
        if end_trial_run(run_id, "its sweep worker stopped mid-trial"):
            ended.append(run_id)
    return ended


def _running_trial_runs(study: optuna.Study, numbers: list[int]) -> list[str]:
    """The RUNNING runs tagged as the study's trials `numbers`, in its parent run's
    experiment: one search, made only when some FAIL trial has no run id."""
    parent_id = study.user_attrs.get(PARENT_ATTR)
    if not numbers or not parent_id:
        return []
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        experiment_id = client.get_run(parent_id).info.experiment_id
        runs = client.search_runs([experiment_id], f"tags.`{STUDY_TAG}` = "
                                  f"'{study.study_name}' and attributes.status = 'RUNNING'",
                                  max_results=1000)
    except MlflowException:
        return []
    wanted = {str(number) for number in numbers}
    return [run.info.run_id for run in runs if run.data.tags.get(TRIAL_TAG) in wanted
            and run.data.tags.get(KIND_TAG) != "study"]


def finish_parent_run(parent_id: str, summary: Mapping[str, Any], status: str) -> None:
    """The best trial's params and validation accuracy, the suggested ranges and the whole
    summary (study.json) on the parent run; then its final status."""
    import mlflow

    client = _client()
    best = summary.get("best")
    recorded = client.get_run(parent_id).data
    if best and (recorded.tags.get("nnlab.best_trial") != str(best["number"])
                 or recorded.metrics.get("best.val.accuracy") != best["value"]):
        # Once per best trial: every command of the study ends here, on every machine.
        client.log_batch(
            parent_id,
            metrics=[mlflow.entities.Metric("best.val.accuracy", best["value"],
                                            int(time.time() * 1000), 0)],
            tags=[mlflow.entities.RunTag("nnlab.best_trial", str(best["number"])),
                  mlflow.entities.RunTag("nnlab.best_experiment", best["experiment"])],
        )
        for key, value in best["values"].items():
            client.set_tag(parent_id, f"best.{key}", str(value))
    client.set_tag(parent_id, "suggested.ranges", " ".join(summary["narrowed"])[:5000])
    client.log_dict(parent_id, dict(summary), "study.json")
    client.set_terminated(parent_id, status)
