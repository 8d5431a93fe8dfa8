"""Everything MLflow: where the store is, one run per trained model, and what it records.

The store is resolved from the repository root (DVC_ROOT when DVC runs us), never from the
working directory: `dvc exp run --queue/--temp` runs stages in a temporary copy of the repo,
and runs logged there would vanish with it. MLFLOW_TRACKING_URI, when set, wins.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nnlab.core.errors import Interrupted, Pruned, TrackingServerError
from nnlab.core.files import project_root
from nnlab.tracking import store
from nnlab.tracking.heartbeat import END_TAG, beating, end_dead_runs, owner_tags
from nnlab.tracking.server_check import check_server

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value
SYSTEM_METRICS_SECONDS = 2  # CPU and memory of a training, sampled this often


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store at the repository root."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(root or project_root()) / STORE_FILE}"


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/"))


def quiet_mlflow() -> None:
    """No "Downloading artifacts" bar in a stage's log, and no INFO lines of the store's
    schema creation or migration, of the system metrics monitor or of a logged model's input
    example check; MLflow's warnings still show."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow.pyfunc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs every failed SQL statement with its traceback before raising the error: the
    # error itself reaches the caller, which prints one line for a store it cannot write
    # (core/errors.py: storage_problem) and the whole error for anything else.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # Its warnings say that a server that went down cannot be asked about the run: the
    # stage's own line says that (server_errors).
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)


def setup(experiment_name: str) -> str:
    """Point MLflow at the project's store and return the experiment id, creating both once.

    A local store is made atomically under a file lock (nnlab/tracking/store.py), and the
    experiment is created under the same lock, so `dvc queue start -j 2`, `make ui` and a
    stage that start at the same moment make each once.
    """
    quiet_mlflow()
    import mlflow
    from mlflow.exceptions import MlflowException

    root = project_root()
    uri = tracking_uri(root)
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    path = store.sqlite_path(uri)
    if path is not None:
        store.ensure(path)
    lock = store.locked(path.parent) if path is not None else contextlib.nullcontext()
    with lock:
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = (
            (root / ARTIFACTS_DIR / experiment_name).as_uri() if _is_local_store(uri) else None
        )
        try:
            return str(client.create_experiment(experiment_name, artifact_location=location))
        except MlflowException:  # created meanwhile by a process that does not lock (a server)
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)


@contextlib.contextmanager
def _final_state() -> Iterator[None]:
    """Give the active run its final state whatever happens inside: FAILED with the error as
    tag `error` on an exception, KILLED with the signal as tag on SIGTERM/SIGINT, KILLED with
    tag nnlab.end_reason "pruned" when a sweep's pruner stopped the training."""
    import mlflow

    try:
        yield
    except TrackingServerError:
        raise  # the server is down: marking the run would only wait for it again
    except Pruned as stop:
        mlflow.set_tags({END_TAG: "pruned", "nnlab.trial_state": "PRUNED",
                         "nnlab.pruned": str(stop)[:5000]})
        mlflow.end_run("KILLED")
        raise
    except Interrupted as stop:
        mlflow.set_tags({END_TAG: f"stopped by {stop.signal_name}",
                         "error": f"Interrupted: stopped by {stop.signal_name}"})
        mlflow.end_run("KILLED")
        raise
    except BaseException as error:
        mlflow.set_tags({END_TAG: "error", "error": f"{type(error).__name__}: {error}"[:5000]})
        mlflow.end_run("FAILED")
        raise


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dvc_tags(stage: str) -> dict[str, str]:
    """Tags that link a run to DVC: stage, experiment name, baseline commit, git commit."""
    commit = _git_commit()
    return {
        "dvc.stage": os.environ.get("DVC_STAGE", stage),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", "workspace"),
        "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", commit),
        "git.commit": commit,
    }


def run_name(model: str) -> str:
    """A training run's name: the model, and in a DVC experiment its name too
    (`numpy_dnn@canny-dabs`), so that twenty experiments are not twenty rows named alike."""
    experiment = os.environ.get("DVC_EXP_NAME")
    return f"{model}@{experiment}" if experiment else model


@contextlib.contextmanager
def server_errors(what: str, again: str = "run `dvc repro` again") -> Iterator[None]:
    """A tracking server that stopped answering inside the block (after MLflow's retries)
    becomes one TrackingServerError line naming the URI, `what` was lost and the way on.
    A local store's errors pass unchanged."""
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    try:
        yield
    except (MlflowException, OSError) as error:
        if _is_local_store(uri):
            raise
        raise TrackingServerError(
            f"the MLflow tracking server at {uri} stopped answering ({type(error).__name__}); "
            f"{what}: {again} once it is back (`nnlab server status`)") from None


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def _reopenable(run_id: str | None, experiment_id: str) -> bool:
    """Whether `run_id` is a run of the experiment, not deleted, that a training can go on."""
    if not run_id:
        return False
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return run.info.experiment_id == experiment_id and run.info.lifecycle_stage == "active"


@contextlib.contextmanager
def training_run(
    experiment_name: str,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    resume: str | None = None,
) -> Iterator[str]:
    """Open the one MLflow run of a trained model; yields its run id.

    On an exception the run is marked FAILED and the error message is stored as the tag
    `error`, so a failed experiment never looks like a successful row; on SIGTERM/SIGINT it
    is marked KILLED. The run is tagged with this process (owner_tags), so that if the
    process dies uncaught, the next stage marks the run FAILED.

    `resume`: the run id of a training that a checkpoint goes on; that run is reopened
    (RUNNING again, its end tags cleared) if the store still has it, else a new one starts.
    """
    import mlflow

    experiment_id = setup(experiment_name)
    end_dead_runs()
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_SECONDS)
    if resume is not None and _reopenable(resume, experiment_id):
        run = mlflow.start_run(run_id=resume, log_system_metrics=True)
        client = mlflow.MlflowClient()
        existing = client.get_run(resume).data.tags
        for key in (END_TAG, "error"):
            if key in existing:
                client.delete_tag(resume, key)
        mlflow.set_tags({**tags, **owner_tags()})
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                               tags={**tags, **owner_tags()}, log_system_metrics=True)
    with _final_state(), beating(run.info.run_id):
        mlflow.log_params({key: _param_value(value) for key, value in params.items()})
        yield run.info.run_id
    mlflow.end_run("FINISHED")


@contextlib.contextmanager
def resume_run(experiment_name: str, run_id: str, stage: str) -> Iterator[str]:
    """Reopen a training run to add evaluation results; marks it FAILED on an exception.

    If the run is not in the store (the store was deleted or MLFLOW_TRACKING_URI changed
    since training), a new run is opened and tagged so that the results are not lost.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    experiment_id = setup(experiment_name)
    end_dead_runs()
    try:
        mlflow.MlflowClient().get_run(run_id)
        run = mlflow.start_run(run_id=run_id)
        mlflow.set_tags(owner_tags())
    except MlflowException:
        tags = {**dvc_tags(stage), "nnlab.missing_train_run": run_id, **owner_tags()}
        run = mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags)
    with _final_state(), beating(run.info.run_id):
        yield run.info.run_id
    mlflow.end_run("FINISHED")


def log_datasets(dataset: str, sets: Mapping[str, tuple[Any, Any, str]]) -> None:
    """The data the active run used, as MLflow datasets (the UI's Dataset column): for each
    context ("training", "validation", "testing") its (images, labels, digest), named
    `<dataset>-<context>`. The digest is the hash of the split's files, so runs on the same
    data share it."""
    import mlflow
    from mlflow.data.numpy_dataset import from_numpy

    for context, (images, labels, digest) in sets.items():
        mlflow.log_input(from_numpy(images, targets=labels, digest=digest,
                                    name=f"{dataset}-{context}"), context=context)


def set_tags(tags: Mapping[str, str]) -> None:
    """Tags of the active run (e.g. the backend and device that trained it)."""
    import mlflow

    mlflow.set_tags(dict(tags))


def log_results(
    metrics: Mapping[str, float],
    artifacts: list[Path],
    tags: Mapping[str, str] | None = None,
    folders: Mapping[str, Path] | None = None,
) -> None:
    """Final metrics, files and tags of the active run; `folders` maps artifact folder names
    to local folders whose files are logged under them (e.g. "plots" -> reports/cnn/plots)."""
    import mlflow

    mlflow.log_metrics(dict(metrics))
    for path in artifacts:
        mlflow.log_artifact(str(path))
    for name, folder in (folders or {}).items():
        mlflow.log_artifacts(str(folder), artifact_path=name)
    if tags:
        mlflow.set_tags(dict(tags))
