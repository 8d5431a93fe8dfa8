"""What a request to `nnlab serve` may cost, checked before MLflow decodes anything.

MLflow's scoring server decodes JSON, CSV and Parquet bodies. Of those, JSON and CSV decode
to about their own size, and what they hold can be counted from their bytes; Parquet is
compressed (609 bytes can hold 1 GB of strings) and is refused. So, before MLflow sees a
request:

- a body over the byte limit gets 413 without being read whole (from its Content-Length, or
  a chunked body as soon as it passes the limit);
- a body that is not JSON or CSV, or has no Content-Type, gets 415 naming the two;
- a body whose bytes hold more images than the limit gets 400: in JSON, its strings outside
  keys are image files and its numbers pixels of the model's input shape (one vectorised
  pass over the bytes, under a second for the largest body; json.loads of the same 16 MiB
  takes 1.3 s, MLflow's parsing 15-20 s); in CSV, each row after the header is an image;
- a JSON body that is not UTF-8, not JSON, nested deeper than MAX_DEPTH, or not an object
  gets 400.

Every error is one line that never repeats the body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ACCEPTED = ("application/json", "text/csv")
STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')  # JSON strings: their brackets do not nest
MAX_DEPTH = 32  # a request is {"inputs": [[[[pixel]]]]}: 6 levels at most
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_DIGIT = np.zeros(256, bool)
_DIGIT[ord("0"):ord("9") + 1] = True


@dataclass(frozen=True)
class Contents:
    """What a JSON or CSV body holds, counted from its bytes."""

    depth: int  # deepest nesting of brackets and braces outside strings
    strings: int  # string values: strings that are not object keys
    numbers: int  # runs of digits outside strings


def contents(body: bytes) -> Contents:
    """Count a body's structure without decoding it. Strings are found by their quotes; a
    body with escaped quotes has its strings blanked first by a regular expression."""
    if b'\\"' in body:
        body = STRINGS.sub(b'"x"', body)  # an empty string would hide its key's colon
    raw = np.frombuffer(body, np.uint8)
    quotes = raw == ord('"')
    inside = (np.cumsum(quotes, dtype=np.int32) & 1).astype(bool) | quotes
    steps = _STEP[raw]
    steps[inside] = 0
    moves = steps[np.flatnonzero(steps)]
    depth = int(np.cumsum(moves, dtype=np.int32).max()) if len(moves) else 0
    digits = _DIGIT[raw] & ~inside
    numbers = int(np.count_nonzero(digits[1:] & ~digits[:-1])) + int(digits[:1].sum())
    keys = int(np.count_nonzero((raw == ord(":")) & ~inside))
    return Contents(depth, max(int(np.count_nonzero(quotes)) // 2 - keys, 0), numbers)


def too_many_images(found: Contents, shape: tuple[int, int, int], max_images: int
                    ) -> str | None:
    """Why the body holds more than `max_images` images of `shape` (H, W, C), or None:
    each string value may be an image file, and each image of pixels is H x W x C numbers."""
    per_image = int(np.prod(shape))
    images = max(found.strings, -(-found.numbers // per_image))
    if images <= max_images:
        return None
    what = f"{found.strings:,} image files" if found.strings >= images else \
        f"{found.numbers:,} pixel values, {images:,} images of {shape}"
    return (f"{what} in one request, over the limit of {max_images:,} images (nnlab serve "
            "--max-images): send them in several requests")


def json_problem(body: bytes, found: Contents) -> str | None:
    """Why a JSON body cannot be a request, in one line that never repeats the body, or
    None: nested deeper than MAX_DEPTH (json.loads would recurse into a RecursionError), not
    UTF-8, not JSON, or not an object."""
    if found.depth > MAX_DEPTH:
        return (f"the JSON is nested {found.depth:,} levels deep (at most {MAX_DEPTH}): send "
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


def csv_problem(body: bytes, max_images: int) -> str | None:
    """Why a CSV body cannot be a request, or None: more rows than `max_images` after its
    header (a row is an image: a base64 file in an `image` column), or not UTF-8."""
    rows = body.count(b"\n") + (not body.endswith(b"\n")) - 1
    if rows > max_images:
        return (f"{rows:,} CSV rows (images) in one request, over the limit of "
                f"{max_images:,} images (nnlab serve --max-images): send them in several "
                "requests")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "the CSV body is not UTF-8 text"
    return None


class RequestGuard:
    """ASGI middleware in front of /invocations: the checks above, then MLflow's app with
    the body replayed. `shape` is the model's input (H, W, C)."""

    def __init__(self, app: Any, limit: int, max_images: int,
                 shape: tuple[int, int, int]) -> None:
        self.app, self.limit, self.max_images, self.shape = app, limit, max_images, shape

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or \
                scope["path"] != "/invocations":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode(
            "latin-1")
        if kind not in ACCEPTED:
            got = f"Content-Type {kind!r}" if kind else "no Content-Type"
            await answer(send, 415, f"{got}: send {' or '.join(ACCEPTED)} (a Parquet body is "
                         "refused: its compressed size says nothing of what it decodes to)")
            return
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
        del chunks
        if kind == "text/csv":
            problem = csv_problem(body, self.max_images)
        else:
            found = contents(body)
            problem = too_many_images(found, self.shape, self.max_images) or \
                json_problem(body, found)
        if problem is not None:
            await answer(send, 400, problem)
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
        await answer(send, 413, f"request body of {size} is over the limit of "
                     f"{self.limit:,} bytes ({self.limit / 2**20:g} MiB): send fewer images "
                     "per request, or start the server with a larger --max-body-mb")


async def answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
