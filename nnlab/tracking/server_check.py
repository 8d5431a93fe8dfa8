"""What a client of the team stack checks before it relies on it: that the MLflow tracking
server answers and takes our credentials, in one line when it does not, before any training.
(The DVC remote's check is `remote.check`.)"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

from nnlab.core.errors import TrackingServerError

VIEW = "workflowType=machine_learning"  # MLflow 3's UI: its model-training view, not GenAI
SERVER_CHECK_SECONDS = 5.0  # how long a stage waits for a tracking server before failing
_checked: set[str] = set()


def check_server(uri: str | None = None, seconds: float = SERVER_CHECK_SECONDS) -> None:
    """Fail in one line, before any training, when the tracking server does not answer.

    A no-op for a local store. Polls the server's /health (a server that is restarting gets
    `seconds` to come back), then makes one authenticated API call, so that wrong or missing
    basic-auth credentials fail here too, not after an hour of training.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")  # unset: the local store
    if not uri.startswith(("http://", "https://")) or uri in _checked:
        return
    base = uri.rstrip("/")
    deadline = time.monotonic() + seconds
    problem = ""
    while True:
        code, problem = _http_get(base + "/health", min(3.0, max(0.5, deadline -
                                                                   time.monotonic())))
        if code == 200:
            break
        if time.monotonic() >= deadline:
            raise TrackingServerError(
                f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not answer "
                f"({problem}); start it with `make server` (`nnlab server status` shows which "
                "part is down), or `unset MLFLOW_TRACKING_URI` to log to the local store")
        time.sleep(0.25)
    code, problem = _http_get(base + "/api/2.0/mlflow/experiments/search?max_results=1", 5.0)
    if code in (401, 403):
        raise TrackingServerError(
            f"the MLflow tracking server at {uri} refused our credentials ({problem}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (`source "
            ".nnlab/server/env` on the server's machine)")
    _checked.add(uri)


def _http_get(url: str, timeout: float) -> tuple[int | None, str]:
    """(status, what went wrong) of a GET, with MLflow's basic-auth variables if set."""
    request = urllib.request.Request(url)
    user, password = (os.environ.get("MLFLOW_TRACKING_USERNAME"),
                      os.environ.get("MLFLOW_TRACKING_PASSWORD"))
    if user and password:
        import base64

        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return int(error.code), f"HTTP {error.code} {error.reason}"
    except urllib.error.URLError as error:
        return None, str(error.reason)
    except (OSError, ValueError) as error:
        return None, str(error) or type(error).__name__


def experiment_link(base: str, experiment_id: str | None) -> str:
    """MLflow's UI on an experiment's runs (or the list of experiments), in its
    model-training view: MLflow 3 starts a new visitor in its GenAI view otherwise."""
    base = base.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?{VIEW}"
    return f"{base}/#/experiments/{experiment_id}/runs?{VIEW}"
