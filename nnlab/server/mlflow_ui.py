"""`nnlab ui` (`make ui`): the local MLflow UI, opened on the runs a user looks for.

Before MLflow's UI starts, the store is made or checked under the stages' lock (so a stage
started at the same moment never meets a half-made store), and runs whose process died are
ended. The link printed opens the dataset's experiment in MLflow's model-training view:
MLflow 3's UI starts a new visitor in its GenAI view otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from nnlab.core.files import project_root
from nnlab.server.ports import ensure_free
from nnlab.tracking import store
from nnlab.tracking.mlflow_runs import STORE_FILE, quiet_mlflow
from nnlab.tracking.server_check import experiment_link


def prepare(root: Path | None = None, report: Callable[[str], None] = print,
            dataset: str | None = None) -> str | None:
    """Make or check the local store, end dead runs; the id of `dataset`'s experiment (the
    one its training runs are in), if there is one."""
    quiet_mlflow()
    import mlflow

    from nnlab.tracking.heartbeat import end_dead_runs

    root = root or project_root()
    path = root / STORE_FILE
    if not path.exists():
        report(f"Creating the MLflow store {path} ...")
    store.ensure(path)
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    ended = end_dead_runs(client)
    if ended:
        report(f"Marked FAILED {len(ended)} run(s) left RUNNING by a process that died: "
               f"{', '.join(ended)}")
    experiment = client.get_experiment_by_name(dataset) if dataset else None
    return str(experiment.experiment_id) if experiment is not None else None


def _server_link(uri: str, dataset: str | None) -> str:
    import mlflow

    try:
        experiment = (mlflow.MlflowClient(uri).get_experiment_by_name(dataset) if dataset
                      else None)
    except Exception:  # noqa: BLE001 (a server that is down: the link to its experiments)
        experiment = None
    return experiment_link(uri.rstrip("/"), experiment.experiment_id if experiment else None)


def serve(host: str, port: int, dataset: str | None, link_only: bool = False,
          root: Path | None = None) -> None:
    """Prepare, print the link to `dataset`'s runs (params.yaml's, read by the caller; None:
    every experiment), then become `mlflow ui` on the store (unless `link_only`)."""
    root = root or project_root()
    remote = os.environ.get("MLFLOW_TRACKING_URI", "")
    if link_only and remote.startswith(("http://", "https://")):
        print(f"Compare runs on the team's MLflow server: open {_server_link(remote, dataset)}",
              flush=True)
        return
    if not link_only:
        ensure_free(host, port, "nnlab ui")  # before the store is touched: fail in a second
    experiment_id = prepare(root, dataset=dataset)
    link = experiment_link(f"http://{host}:{port}", experiment_id)
    if link_only:
        print(f"Compare runs in the MLflow UI: `make ui`, then open {link}", flush=True)
        return
    print(f"MLflow UI on {root / STORE_FILE}: open {link}  (Ctrl-C stops it)", flush=True)
    # MLflow's job runner (huey consumer processes, for server-side jobs) has nothing to do for
    # a local store and only slows the start; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true turns it on.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                              f"sqlite:///{root / STORE_FILE}", "--host", host,
                              "--port", str(port), "--workers", "1"])
