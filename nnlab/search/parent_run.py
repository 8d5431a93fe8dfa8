"""The MLflow side of a sweep: one parent run per sweep, with every trial's run nested under it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from nnlab.search.report import format_value
from nnlab.search.trials import RANK_METRIC, Trial

_SWEEP_TAG = "nnlab.sweep_id"


def start_parent_run(experiment_name: str, sweep_id: str, model: str,
                     params: Mapping[str, Any]) -> str:
    """Create the sweep's parent MLflow run (and the store, before any worker starts)."""
    import mlflow

    from nnlab import tracking

    experiment_id = tracking.setup(experiment_name)
    client = mlflow.MlflowClient(tracking.tracking_uri())
    run = client.create_run(
        experiment_id, run_name=f"sweep-{sweep_id}",
        tags={_SWEEP_TAG: sweep_id, "model": model, "nnlab.kind": "sweep"},
    )
    client.log_batch(run.info.run_id, params=[
        mlflow.entities.Param(key, str(value)[: tracking.MAX_PARAM_LENGTH])
        for key, value in params.items()
    ])
    return str(run.info.run_id)


def adopt_trial_runs(experiment_name: str, parent_id: str, sweep_id: str,
                     trials: Sequence[Trial]) -> None:
    """Nest each trial's MLflow run (made by train@<model>, tagged dvc.exp_name) under the
    parent run. Tags set from here, not env vars: those do not reach DVC's queue workers."""
    import mlflow

    from nnlab import tracking

    client = mlflow.MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`dvc.exp_name` LIKE 'sweep-{sweep_id}-%'",
        max_results=10000,
    )
    by_name: dict[str, Any] = {}
    for found in sorted(runs, key=lambda item: item.info.start_time or 0):
        by_name[found.data.tags["dvc.exp_name"]] = found  # a retried trial: its latest run
    for trial in trials:
        run = by_name.get(trial.name)
        if run is None:
            continue  # restored from DVC's run-cache, or failed before MLflow started
        trial.run_id = str(run.info.run_id)
        for key, value in {"mlflow.parentRunId": parent_id, _SWEEP_TAG: sweep_id,
                           "nnlab.sweep_round": str(trial.round)}.items():
            client.set_tag(trial.run_id, key, value)


def finish_parent_run(parent_id: str, summary: Mapping[str, Any], status: str) -> None:
    """Log the best params, best validation accuracy and every round's ranges; end the run."""
    import mlflow

    from nnlab import tracking

    client = mlflow.MlflowClient(tracking.tracking_uri())
    best = summary.get("best")
    if best:
        client.log_batch(
            parent_id,
            metrics=[mlflow.entities.Metric(f"best.{RANK_METRIC}", best["metrics"][RANK_METRIC],
                                            int(time.time() * 1000), 0)],
            params=[mlflow.entities.Param(f"best.{key}", format_value(value))
                    for key, value in best["values"].items()],
            tags=[mlflow.entities.RunTag("nnlab.best_trial", best["name"])],
        )
    *sampled, suggested = summary["ranges"]
    for index, ranges in enumerate(sampled, start=1):
        client.log_param(parent_id, f"round{index}.ranges", " ".join(ranges)[:6000])
    client.log_param(parent_id, "suggested.ranges", " ".join(suggested)[:6000])
    client.log_dict(parent_id, dict(summary), "sweep.json")
    client.set_terminated(parent_id, status)
