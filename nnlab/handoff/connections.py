"""The connections of `nnlab serve`: capped, and closed when idle or slow; and a log that
says a repeated error once, with a count.

uvicorn closes a keep-alive connection idle after a response, but not one that never sends a
request, or sends half a header: 200 such sockets stay open as long as their client likes,
and against `ulimit -n 256` every normal request then times out while the server logs
`Too many open files` for each refused accept. GuardedH11Protocol (uvicorn's h11 protocol,
given to uvicorn as its `http` class) adds:

- a deadline: a connection must deliver a whole request, headers and body, within
  `client_timeout` seconds of opening or of its previous answer, or it is closed;
- a cap: at most `max_connections` open at once, and never more than the open-file limit
  leaves room for; a connection over the cap closes the connection that has waited longest
  for its request (an idle or slow one), so a client that sends its request at once is served
  while hundreds of idle sockets are held. When every open connection has a whole request
  being answered, the new one is closed at once.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any

from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

from nnlab.handoff.limits import CLIENT_TIMEOUT, MAX_CONNECTIONS

h11 = h11_impl.h11  # the h11 uvicorn runs on (a dependency of uvicorn's, not ours)

ACCEPT_BACKLOG = 64  # accepted per turn of the event loop, before any is capped
FILES_KEPT = 64  # open files the server keeps for itself besides the ones it has open


def connection_cap(wanted: int) -> int:
    """`wanted`, or less where the open-file limit would be reached first: the files open
    now, a burst of ACCEPT_BACKLOG accepted at once, and FILES_KEPT spare stay below it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    open_now = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    return max(1, min(wanted, soft - open_now - ACCEPT_BACKLOG - FILES_KEPT))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline per request and a cap on connections (set by
    `configure` in each server process, before it serves)."""

    client_timeout = CLIENT_TIMEOUT
    max_connections = MAX_CONNECTIONS

    @classmethod
    def configure(cls, client_timeout: float, max_connections: int) -> int:
        """Set the deadline and the cap; the cap in force (connection_cap)."""
        cls.client_timeout = client_timeout
        cls.max_connections = connection_cap(max_connections)
        return cls.max_connections

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._deadline: Any = None
        self._arm()
        if len(self.connections) > self.max_connections:
            waiting = [c for c in self.connections if isinstance(c, GuardedH11Protocol)
                       and c is not self and c.waiting()]
            oldest = min(waiting, key=lambda c: c.waiting_since, default=None)
            (oldest or self).drop("over the connection cap")

    def _arm(self) -> None:
        self.waiting_since = time.monotonic()
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.client_timeout, self._expire)

    def waiting(self) -> bool:
        """Still waiting for a whole request (nothing sent yet, or part of one)."""
        return self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED) and \
            not self.transport.is_closing()

    def _expire(self) -> None:
        if self.waiting():
            self.drop(f"no whole request within {self.client_timeout:g} s")

    def drop(self, reason: str) -> None:
        if not self.transport.is_closing():
            logging.getLogger("uvicorn.error").info("closed a connection: %s", reason)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.waiting() and self._deadline is not None:
            self._deadline.cancel()  # a whole request: its answer is the app's business
            self._deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)


class Once(logging.Filter):
    """Lets a message through once per `window` seconds, by its logger, level, text and
    exception type; the next one through says how many were held back. A flood of
    `Too many open files` (112 MB in 30 s) becomes a line per window."""

    def __init__(self, window: float = 60.0) -> None:
        super().__init__()
        self.window = window
        self.seen: dict[tuple[Any, ...], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        key = (record.name, record.levelno, str(record.msg), kind)
        now = time.monotonic()
        last, held = self.seen.get(key, (-self.window, 0))
        if now - last < self.window:
            self.seen[key] = (last, held + 1)
            return False
        self.seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.window:g} s)"
        return True


def quiet_floods() -> None:
    """Once() on the loggers a flood comes from: asyncio's accept errors, uvicorn's."""
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, Once) for f in logger.filters):
            logger.addFilter(Once())
