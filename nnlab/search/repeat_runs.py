"""`nnlab repeat`'s side of MLflow: each repeat's run tagged with its group and seed, so the
runs table can group them (Group by: tag nnlab.repeat), and one summary run per group holding
the spread as metrics and the repeat's report as artifacts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.tracking.heartbeat import owner_tags
from nnlab.tracking.server_check import experiment_link

GROUP_TAG = "nnlab.repeat"  # e.g. "numpy_dnn: learning_rate=0.003 [1a2b3c4d5e]"
SEED_TAG = "nnlab.repeat.seed"
ROLE_TAG = "nnlab.repeat.role"  # "repeat" or "summary"
# MLflow's UI opens a view kept as an experiment tag `mlflow.sharedViewState.<key>` when its
# link has `viewStateShareKey=<key>`: the runs grouped by repeat, the intervals as columns.
VIEW_KEY = "nnlab-repeats"
VIEW_COLUMNS = [f"metrics.`{split}.{metric}{end}`" for split in ("val", "test")
                for metric in ("accuracy",) for end in ("", "_low", "_high")] + [
    "metrics.`test.accuracy.mean`", "metrics.`test.accuracy.std`", f"tags.`{SEED_TAG}`"]
VIEW = {"groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}]},
        # the runs of no repeat (ordinary experiments) shown too, not folded away
        "groupsExpanded": {f"tag.{GROUP_TAG}": True},
        "selectedColumns": VIEW_COLUMNS, "orderByKey": "attributes.start_time",
        "orderByAsc": False}


@dataclass(frozen=True)
class Group:
    """One configuration's repeats: its tag value, seed -> experiment name, its summary."""

    tag: str
    experiments: Mapping[int, str]
    summary: Mapping[str, Any]


def record(dataset: str, model: str, groups: Sequence[Group], artifacts: Sequence[Path]) -> str:
    """Tag every repeat's run (found by its DVC experiment's name) and write each group's
    summary run: made once, and updated when the same repeat runs again. The link to the
    runs grouped by repeat, in `make ui` or on the team's server."""
    from nnlab.tracking import mlflow_runs

    experiment_id = mlflow_runs.setup(dataset)
    import mlflow

    client = mlflow.MlflowClient()
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}",
                              json.dumps(VIEW))
    for group in groups:
        for seed, name in group.experiments.items():
            for run in client.search_runs(
                    [experiment_id], f"tags.`dvc.exp_name` = '{name}' and tags.model = '{model}'"):
                if run.data.tags.get(GROUP_TAG) != group.tag:
                    client.set_tag(run.info.run_id, GROUP_TAG, group.tag)
                    client.set_tag(run.info.run_id, SEED_TAG, str(seed))
                    client.set_tag(run.info.run_id, ROLE_TAG, "repeat")
        _summary_run(client, experiment_id, model, group, artifacts)
    uri = mlflow_runs.tracking_uri()
    base = uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{experiment_link(base, experiment_id)}&viewStateShareKey={VIEW_KEY}"


def _summary_run(client: Any, experiment_id: str, model: str, group: Group,
                 artifacts: Sequence[Path]) -> None:
    found = client.search_runs([experiment_id], f"tags.`{GROUP_TAG}` = '{group.tag}' and "
                               f"tags.`{ROLE_TAG}` = 'summary'", max_results=1)
    seeds = len(group.summary["seeds"])
    owner = owner_tags()  # a process that dies here leaves a run the next stage ends FAILED
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        for key, tag in owner.items():
            client.set_tag(run_id, key, tag)
    else:
        run_id = client.create_run(experiment_id, run_name=f"summary of {group.tag}", tags={
            GROUP_TAG: group.tag, ROLE_TAG: "summary", "model": model, **owner}).info.run_id
    try:
        metrics = {"seeds_finished": float(seeds),
                   "seeds_failed": float(len(group.summary["failed"]))}
        for metric, values in group.summary.get("metrics", {}).items():
            metrics.update({f"{metric}.mean": values["mean"], f"{metric}.min": values["min"],
                            f"{metric}.max": values["max"]})
            if values["std"] is not None:
                metrics[f"{metric}.std"] = values["std"]
                metrics[f"{metric}.mean_low"], metrics[f"{metric}.mean_high"] = \
                    values["interval"]
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        for path in artifacts:
            client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
