"""`nnlab serve --model models:/NAME@champion`: MLflow's scoring server
(`mlflow.pyfunc.scoring_server`, what `mlflow models serve` runs) on a model of the registry,
taking image files or pixels (nnlab/handoff/serving_pyfunc.py).

    POST /invocations  {"inputs": ["<base64 PNG or JPEG>", ...]}        image files
                       {"inputs": [[[[0, 12, ...]]]]}                  uint8 (N, H, W, C)
    -> {"predictions": [{"class": "7", "probabilities": {"0": 0.001, ...}}, ...]}

A bad request (not an image, a wrong shape, too many images or pixels) gets 400 with
`{"error": "<one line>"}`: MLflow's own error body holds the request's data and a traceback.
A body over `max_body_mb` gets 413 before it is read: from its Content-Length at once, or,
sent in chunks, as soon as the chunks pass the limit. A body that is not UTF-8, not JSON, or
nested absurdly deep gets 400 in one line that never repeats it.
"""

from __future__ import annotations

import gc
import json
import re
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    # The wrapper is saved only to be loaded: the folder goes once it is (nothing reads it
    # after load_context).
    with tempfile.TemporaryDirectory(prefix="nnlab-serve-") as temporary:
        folder = Path(temporary) / "model"
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


STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')  # JSON strings: their brackets do not nest
MAX_DEPTH = 32  # a request is {"inputs": [[[[pixel]]]]}: 6 levels at most


def json_problem(body: bytes) -> str | None:
    """Why a JSON request body cannot be a request, in one line that never repeats the
    body, or None: not UTF-8, not JSON, nested deeper than MAX_DEPTH (json.loads would
    recurse into a RecursionError), or not an object."""
    structure = np.frombuffer(STRINGS.sub(b'""', body), np.uint8)
    steps = np.zeros(len(structure), np.int8)
    steps[(structure == ord("[")) | (structure == ord("{"))] = 1
    steps[(structure == ord("]")) | (structure == ord("}"))] = -1
    depth = int(np.cumsum(steps, dtype=np.int64).max()) if len(steps) else 0
    if depth > MAX_DEPTH:
        return (f"the JSON is nested {depth:,} levels deep (at most {MAX_DEPTH}): send "
                '{"inputs": [...]} with image files or pixels')
    try:
        parsed = json.loads(body)
    except UnicodeDecodeError:
        return 'the body is not UTF-8 text: send JSON such as {"inputs": ["<base64 PNG>"]}'
    except json.JSONDecodeError as error:
        return (f"the body is not JSON ({error.msg} at line {error.lineno}, column "
                f'{error.colno}): send {{"inputs": [...]}}')
    if not isinstance(parsed, dict):
        return (f'send a JSON object such as {{"inputs": [...]}}, not a '
                f"{type(parsed).__name__}")
    return None


class RequestGuard:
    """ASGI middleware in front of /invocations: a body over `limit` bytes is answered 413
    without being read whole (a declared Content-Length over the limit before any of it is
    read; a chunked body as soon as it passes the limit); a JSON body that cannot be a
    request (json_problem) gets 400 in one line before MLflow parses it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or \
                scope["path"] != "/invocations":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send, int(length) if length.isdigit() else None)
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
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        problem = json_problem(body) if kind == b"application/json" else None
        if problem is not None:
            await _answer(send, 400, problem)
            return
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
        await _answer(send, 413, f"request body of {size} is over the limit of "
                      f"{self.limit:,} bytes ({self.limit / 2**20:g} MiB): send fewer images "
                      "per request, or start the server with a larger --max-body-mb")


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
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

    return RequestGuard(served, limits.max_body_bytes)


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


def serve(uri: str, host: str, port: int, limits: Limits = Limits()) -> None:
    import uvicorn

    from nnlab.core.ports import ensure_free

    ensure_free(host, port, "nnlab serve")  # before the model loads: fail in a second
    served = app(uri, limits)
    # The model, TensorFlow and MLflow are a few million objects that live as long as the
    # server: out of the collector's sight, a full collection no longer walks them all in the
    # middle of a request (it cost the slowest 1% of requests 200-400 ms).
    gc.collect()
    gc.freeze()
    print(f"Serving {uri} on http://{host}:{port}/invocations (POST image files as base64 "
          f"or uint8 pixels; at most {limits.max_images} images, {limits.max_body_mb:g} MiB "
          "a request; Ctrl-C stops it)", flush=True)
    warning = exposure_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    sys.stdout.flush()
    uvicorn.run(served, host=host, port=port, log_level="warning")
