"""`nnlab promote`: a trained model becomes a version of the registered model
`<dataset>-<model>` (e.g. `mnist-cnn`) in MLflow's Model Registry, on the local store or the
team server, and the alias `@champion` moves to it only if it beats the champion on
validation accuracy, on the same data.

A model is named by its workspace folder (`models/<model>/train_info.json`), by a DVC
experiment, by a sweep trial or by its MLflow run id. Its run must have FINISHED, not been
pruned, and hold its model and its validation and test accuracy. The version carries the
run's DVC and git tags, the dataset digest and both accuracies, so a colleague or a service
loads `models:/mnist-cnn@champion` with nothing but MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.core.files import read_json
from nnlab.core.layout import TRAIN_INFO_FILE, Layout

CHAMPION = "champion"
VERSION_TAGS = ("dvc.exp_name", "dvc.baseline_rev", "git.commit", "dataset.digest")


class PromoteError(ValueError):
    """A model that cannot be promoted (message names why and what to do)."""


@dataclass(frozen=True)
class Candidate:
    """A trained model's run, as the registry needs it."""

    run_id: str
    model_uri: str  # models:/<logged model id>
    model: str
    dataset: str
    digest: str
    val_accuracy: float
    test_accuracy: float
    tags: dict[str, str]
    onnx: bool = False  # the run's ONNX export (`nnlab export`), not its native model

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model}" + ("-onnx" if self.onnx else "")


def tracking_client() -> Any:
    """The client of the project's tracking store (made first if it is a new local one)."""
    import mlflow

    from nnlab.tracking import mlflow_runs, store

    mlflow_runs.quiet_mlflow()
    uri = mlflow_runs.tracking_uri()
    path = store.sqlite_path(uri)
    if path is not None:
        store.ensure(path)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def find_run(model: str | None = None, experiment: str | None = None,
             study: str | None = None, trial: int | None = None, run_id: str | None = None,
             root: Path | None = None) -> str:
    """The run id of the model named one of the four ways."""
    if run_id:
        return run_id
    if study is not None:
        return _trial_run(study, trial)
    if experiment:
        if not model:
            raise PromoteError(f"--exp {experiment}: give the model too, e.g. --model cnn")
        return _experiment_run(experiment, model)
    if not model:
        raise PromoteError("name a model: --model M (the workspace's), --exp NAME --model M, "
                           "--study S --trial N, or --run RUN_ID")
    info_path = Layout(root or Path(".")).model_dir(model) / TRAIN_INFO_FILE
    if not info_path.is_file():
        raise PromoteError(f"{info_path}: no trained {model} in this workspace; run "
                           "`dvc repro`, or name a run with --exp, --study/--trial or --run")
    return str(read_json(info_path)["mlflow_run_id"])


def _trial_run(study: str, trial: int | None) -> str:
    from nnlab.search.study import default_url, open_study
    from nnlab.search.trial_link import RUN_ATTR

    if trial is None:
        raise PromoteError(f"--study {study}: give the trial too, e.g. --trial 3")
    found, _ = open_study(default_url(), study)
    trials = [t for t in found.get_trials(deepcopy=False) if t.number == trial]
    if not trials or RUN_ATTR not in trials[0].user_attrs:
        raise PromoteError(f"study {study!r} has no trial {trial} with an MLflow run")
    return str(trials[0].user_attrs[RUN_ATTR])


def _experiment_run(experiment: str, model: str) -> str:
    client = tracking_client()
    ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    runs = client.search_runs(ids, f"tags.`dvc.exp_name` = '{experiment}' and "
                              f"tags.model = '{model}'", order_by=["attributes.start_time DESC"],
                              max_results=1) if ids else []
    if not runs:
        raise PromoteError(f"no MLflow run of {model} in DVC experiment {experiment!r} "
                           "(`dvc exp show` lists the experiments)")
    return str(runs[0].info.run_id)


def candidate(run_id: str, onnx: bool = False) -> Candidate:
    """The run as a model to promote, refused in one line if it is not one; with `onnx`, its
    ONNX export, registered as `<dataset>-<model>-onnx`."""
    from mlflow.exceptions import MlflowException

    from nnlab.tracking.heartbeat import end_dead_runs

    client = tracking_client()
    end_dead_runs(client)  # a run its dead process left RUNNING is FAILED, not promotable
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise PromoteError(f"no MLflow run {run_id} in {client.tracking_uri}") from None
    tags, metrics = run.data.tags, run.data.metrics
    if tags.get("nnlab.trial_state") == "PRUNED" or tags.get("nnlab.end_reason") == "pruned":
        raise PromoteError(f"run {run_id} was pruned by its sweep: it holds no trained model")
    if run.info.status != "FINISHED":
        raise PromoteError(f"run {run_id} is {run.info.status}, not FINISHED: only a finished "
                           "training is promoted")
    missing = [key for key in ("val.accuracy", "test.accuracy") if key not in metrics]
    if missing or "model" not in tags or "dataset" not in tags:
        raise PromoteError(f"run {run_id} has no {', '.join(missing) or 'model tags'}: run "
                           "its evaluate stage (`dvc repro`) first")
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' and name = '{'onnx' if onnx else 'model'}'",
        order_by=[{"field_name": "creation_time", "ascending": False}])  # the latest export
    if not logged:
        raise PromoteError(f"run {run_id} has no ONNX model: `nnlab export --run {run_id}` "
                           "makes one" if onnx else f"run {run_id} logged no model")
    return Candidate(run_id, f"models:/{logged[0].model_id}", tags["model"], tags["dataset"],
                     tags.get("dataset.digest", ""), float(metrics["val.accuracy"]),
                     float(metrics["test.accuracy"]),
                     {key: tags[key] for key in VERSION_TAGS if key in tags}, onnx)


def promote(found: Candidate, force: bool = False,
            report: Callable[[str], None] = print) -> int:
    """Register `found` (once per run) and move @champion if it wins; the version number."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = tracking_client()
    try:
        champion = client.get_model_version_by_alias(found.name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is not None and champion.tags.get("dataset.digest") != found.digest \
            and not force:
        raise PromoteError(
            f"{found.name}@{CHAMPION} (version {champion.version}) was trained on other data "
            f"(digest {champion.tags.get('dataset.digest', '?')[:12]}, this run's "
            f"{found.digest[:12]}): their accuracies do not compare; --force moves it anyway")
    versions = client.search_model_versions(f"name = '{found.name}' and "
                                            f"run_id = '{found.run_id}'")
    if versions:
        version = versions[0]
        report(f"{found.name}: run {found.run_id} is already version {version.version}")
    else:
        tags = {**found.tags, "val.accuracy": f"{found.val_accuracy:.6f}",
                "test.accuracy": f"{found.test_accuracy:.6f}"}
        version = mlflow.register_model(found.model_uri, found.name, tags=tags)
        report(f"{found.name}: registered version {version.version} from run {found.run_id} "
               f"(val.accuracy {found.val_accuracy:.4f}, test.accuracy "
               f"{found.test_accuracy:.4f})")
    _move_champion(client, found, int(version.version), champion, force, report)
    return int(version.version)


def _move_champion(client: Any, found: Candidate, version: int, champion: Any, force: bool,
                   report: Callable[[str], None]) -> None:
    here = f"{found.val_accuracy:.4f}"
    if champion is not None and int(champion.version) == version:
        report(f"{found.name}@{CHAMPION} is version {version} already (val.accuracy {here})")
        return
    if champion is None:
        client.set_registered_model_alias(found.name, CHAMPION, str(version))
        report(f"{found.name}@{CHAMPION} -> version {version} (val.accuracy {here}; "
               "no champion before)")
        return
    theirs = float(champion.tags.get("val.accuracy", "nan"))
    if found.val_accuracy > theirs or force:
        client.set_registered_model_alias(found.name, CHAMPION, str(version))
        how = "by --force, though it does not beat" if found.val_accuracy <= theirs \
            else "beats"
        report(f"{found.name}@{CHAMPION} -> version {version}: val.accuracy {here} {how} "
               f"version {champion.version}'s {theirs:.4f}")
    else:
        report(f"{found.name}@{CHAMPION} stays version {champion.version}: its val.accuracy "
               f"{theirs:.4f} is not beaten by {here} (--force moves it)")
