"""`nnlab serve --model models:/NAME@champion`: MLflow's scoring server
(`mlflow.pyfunc.scoring_server`, what `mlflow models serve` runs) on a model of the registry,
taking image files or pixels (nnlab/handoff/serving_pyfunc.py).

    POST /invocations  {"inputs": ["<base64 PNG or JPEG>", ...]}        image files
                       {"inputs": [[[[0, 12, ...]]]]}                  uint8 (N, H, W, C)
    -> {"predictions": [{"class": "7", "probabilities": {"0": 0.001, ...}}, ...]}

A bad request (not an image, a wrong shape) gets 400 with `{"error": "<one line>"}`: MLflow's
own error body holds the request's data and a traceback.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SERVING_CODE = Path(__file__).with_name("serving_pyfunc.py")


def load(uri: str) -> Any:
    """The serving pyfunc over `uri` (checked: it must carry its classes and input shape)."""
    import mlflow

    from nnlab.handoff.predict import registered_metadata

    registered_metadata(uri)
    folder = Path(tempfile.mkdtemp(prefix="nnlab-serve-")) / "model"
    mlflow.pyfunc.save_model(folder, python_model=str(SERVING_CODE),
                             model_config={"uri": uri}, pip_requirements=[])
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


def app(uri: str) -> Any:
    """MLflow's scoring app on the serving model, its errors made one line."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.pyfunc import scoring_server

    served = scoring_server.init(load(uri))

    @served.middleware("http")
    async def one_line_errors(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if response.status_code < 400 or request.url.path != "/invocations":
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        status = 400 if response.status_code >= 500 else response.status_code
        return JSONResponse({"error": one_line(body)}, status_code=status)

    return served


def serve(uri: str, host: str, port: int) -> None:
    import uvicorn

    served = app(uri)
    print(f"Serving {uri} on http://{host}:{port}/invocations (POST image files as base64 "
          "or uint8 pixels; Ctrl-C stops it)", flush=True)
    sys.stdout.flush()
    uvicorn.run(served, host=host, port=port, log_level="warning")
