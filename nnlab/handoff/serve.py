"""`nnlab serve --model models:/NAME@champion`: MLflow's scoring server
(`mlflow.pyfunc.scoring_server`, what `mlflow models serve` runs) on a model of the registry,
taking image files or pixels (nnlab/handoff/serving_pyfunc.py).

    POST /invocations  {"inputs": ["<base64 PNG or JPEG>", ...]}        image files
                       {"inputs": [[[[0, 12, ...]]]]}                  uint8 (N, H, W, C)
    -> {"predictions": [{"class": "7", "probabilities": {"0": 0.001, ...}}, ...]}

A bad request (not an image, a wrong shape, too many images or pixels) gets 400 with
`{"error": "<one line>"}`: MLflow's own error body holds the request's data and a traceback.
A body over `max_body_mb` gets 413 before it is read: from its Content-Length at once, or,
sent in chunks, as soon as the chunks pass the limit.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVING_CODE = Path(__file__).with_name("serving_pyfunc.py")
MAX_BODY_MB = 16.0  # 24 phone photos of 500 KB, base64; 100,000 digits' PNGs
MAX_IMAGES = 256  # per request
MAX_PIXELS = 40_000_000  # per image file, width x height: a 7,700 x 5,200 photo

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """What one request may cost (`nnlab serve --max-body-mb/--max-images/--max-pixels`)."""

    max_body_mb: float = MAX_BODY_MB
    max_images: int = MAX_IMAGES
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        for name in ("max_body_mb", "max_images", "max_pixels"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be above 0; "
                                 f"Received: {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)


def load(uri: str, limits: Limits = Limits()) -> Any:
    """The serving pyfunc over `uri` (checked: it must carry its classes and input shape)."""
    import mlflow

    from nnlab.handoff.predict import registered_metadata

    registered_metadata(uri)
    folder = Path(tempfile.mkdtemp(prefix="nnlab-serve-")) / "model"
    mlflow.pyfunc.save_model(folder, python_model=str(SERVING_CODE), pip_requirements=[],
                             model_config={"uri": uri, "max_images": limits.max_images,
                                           "max_pixels": limits.max_pixels})
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


class BodyLimit:
    """ASGI middleware: a POST body over `limit` bytes is answered 413 without being read
    whole. A declared Content-Length over the limit is refused before any of it is read; a
    chunked body is read up to the limit, then refused, or handed on whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._refuse(send, int(length) if length.isdigit() else None)
                return
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(send, None)
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, length: int | None) -> None:
        size = f"{length:,} bytes" if length is not None else "more bytes"
        error = (f"request body of {size} is over the limit of {self.limit:,} bytes "
                 f"({self.limit / 2**20:g} MiB): send fewer images per request, or start "
                 "the server with a larger --max-body-mb")
        body = json.dumps({"error": error}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def app(uri: str, limits: Limits = Limits()) -> Any:
    """MLflow's scoring app on the serving model, its errors made one line, its bodies
    limited."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.pyfunc import scoring_server

    served = scoring_server.init(load(uri, limits))

    @served.middleware("http")
    async def one_line_errors(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if response.status_code < 400 or request.url.path != "/invocations":
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        status = 400 if response.status_code >= 500 else response.status_code
        return JSONResponse({"error": one_line(body)}, status_code=status)

    return BodyLimit(served, limits.max_body_bytes)


def serve(uri: str, host: str, port: int, limits: Limits = Limits()) -> None:
    import uvicorn

    served = app(uri, limits)
    # The model, TensorFlow and MLflow are a few million objects that live as long as the
    # server: out of the collector's sight, a full collection no longer walks them all in the
    # middle of a request (it cost the slowest 1% of requests 200-400 ms).
    gc.collect()
    gc.freeze()
    print(f"Serving {uri} on http://{host}:{port}/invocations (POST image files as base64 "
          f"or uint8 pixels; at most {limits.max_images} images, {limits.max_body_mb:g} MiB "
          "a request; Ctrl-C stops it)", flush=True)
    sys.stdout.flush()
    uvicorn.run(served, host=host, port=port, log_level="warning")
