"""`nnlab serve --model models:/NAME@champion`: MLflow's scoring server
(`mlflow.pyfunc.scoring_server`, what `mlflow models serve` runs) on a model of the registry,
taking image files or pixels (nnlab/handoff/serving_pyfunc.py).

    POST /invocations  {"inputs": ["<base64 PNG or JPEG>", ...]}        image files
                       {"inputs": [[[[0, 12, ...]]]]}                  uint8 (N, H, W, C)
    -> {"predictions": [{"class": "7", "probabilities": {"0": 0.001, ...}}, ...]}

What a request may cost is checked before MLflow decodes it (nnlab/handoff/request_guard.py:
bytes, body type, images), and while the pyfunc decodes it (pixels per file and per
request); connections are capped and closed when idle or slow
(nnlab/handoff/connections.py). A bad request gets 400 (413, 415) with `{"error": "<one
line>"}`: MLflow's own error body holds the request's data and a traceback. `--workers N`
runs N server processes on the port, each with its own copy of the model.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from nnlab.handoff.limits import DEFAULTS, Limits

SERVING_CODE = Path(__file__).with_name("serving_pyfunc.py")
CONFIG = "NNLAB_SERVE_CONFIG"  # how the server's processes get the model and limits


def load(uri: str, limits: Limits = DEFAULTS) -> Any:
    """The serving pyfunc over `uri` (checked: it must carry its classes and input shape)."""
    import mlflow

    from nnlab.handoff.prediction import registered_metadata

    registered_metadata(uri)
    # The wrapper is saved only to be loaded: the folder goes once it is (nothing reads it
    # after load_context).
    with tempfile.TemporaryDirectory(prefix="nnlab-serve-") as temporary:
        folder = Path(temporary) / "model"
        # Its input is whatever a client sends (image files or pixels): it has no signature,
        # and MLflow's warning that it could infer none is not for the user.
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        pyfunc_log.setLevel(logging.ERROR)
        try:
            mlflow.pyfunc.save_model(folder, python_model=str(SERVING_CODE),
                                     pip_requirements=[],
                                     model_config={"uri": uri, "max_images": limits.max_images,
                                                   "max_pixels": limits.max_pixels})
        finally:
            pyfunc_log.setLevel(level)
        return mlflow.pyfunc.load_model(str(folder))


def one_line(body: bytes) -> str:
    """The cause in an error body of MLflow's scoring server, on one line: its message's
    last `Error: ` part (the first part repeats the request's data), no traceback."""
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    message = message.rsplit("Error: ", 1)[-1]
    return " ".join(message.split())[:500] or "bad request"


def app(uri: str, limits: Limits = DEFAULTS) -> Any:
    """MLflow's scoring app on the serving model, its errors made one line, its requests
    checked first (RequestGuard)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.pyfunc import scoring_server

    from nnlab.handoff.request_guard import RequestGuard

    model = load(uri, limits)
    served = scoring_server.init(model)

    @served.middleware("http")
    async def one_line_errors(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if response.status_code < 400 or request.url.path != "/invocations":
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        status = 400 if response.status_code >= 500 else response.status_code
        return JSONResponse({"error": one_line(body)}, status_code=status)

    shape = model.unwrap_python_model().shape
    return RequestGuard(served, limits.max_body_bytes, limits.max_images, shape)


def exposure_warning(host: str) -> str | None:
    """What to tell someone who serves on an address other machines reach, or None."""
    import ipaddress

    try:
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:  # a host name: it may resolve to anything
        pass
    return (f"nnlab serve: warning: {host} is reachable from other machines and the server "
            "has no authentication: anyone who reaches this port can call the model. Put a "
            "reverse proxy with authentication in front (docs/registry.md), or serve on "
            "127.0.0.1")


def server_app() -> Any:
    """The app of one server process (uvicorn's factory, in each of `--workers`): the model
    and limits from CONFIG, set by `serve`."""
    from nnlab.core.quiet import filtered_stderr
    from nnlab.handoff.connections import GuardedH11Protocol, quiet_floods

    config = json.loads(os.environ[CONFIG])
    limits = Limits(**config["limits"])
    quiet_floods()
    # TensorFlow's C++ notices at import (a Keras model): nothing a user can act on.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr():
        served = app(config["uri"], limits)
    cap = GuardedH11Protocol.configure(limits.client_timeout, limits.max_connections)
    # The model, TensorFlow and MLflow are a few million objects that live as long as the
    # server: out of the collector's sight, a full collection no longer walks them all in the
    # middle of a request (it cost the slowest 1% of requests 200-400 ms).
    gc.collect()
    gc.freeze()
    if config["workers"] == 1:
        print(f"Serving {config['uri']} on {config['url']} (POST image files as base64 or "
              f"uint8 pixels; at most {limits.max_images} images, {limits.max_body_mb:g} MiB "
              f"a request; {cap} connections; Ctrl-C stops it)", flush=True)
    return served


def serve(uri: str, host: str, port: int, limits: Limits = DEFAULTS, workers: int = 1) -> None:
    import uvicorn

    from nnlab.handoff.connections import ACCEPT_BACKLOG, GuardedH11Protocol
    from nnlab.server.ports import ensure_free

    if workers < 1:
        raise ValueError(f"--workers must be at least 1; Received: {workers}")
    ensure_free(host, port, "nnlab serve")  # before the model loads: fail in a second
    url = f"http://{host}:{port}/invocations"
    os.environ[CONFIG] = json.dumps({"uri": uri, "limits": dataclasses.asdict(limits),
                                     "workers": workers, "url": url})
    if workers == 1:
        served = server_app()  # loaded here: an error is one line before the port opens
    else:
        print(f"Serving {uri} on {url} from {workers} processes, each loading the model "
              "(Ctrl-C stops them)", flush=True)
    warning = exposure_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    uvicorn.run(served if workers == 1 else "nnlab.handoff.scoring_server:server_app",
                factory=workers > 1, host=host, port=port, workers=workers,
                http=GuardedH11Protocol, backlog=ACCEPT_BACKLOG, log_level="warning",
                timeout_graceful_shutdown=5)
