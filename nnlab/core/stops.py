"""SIGTERM and SIGINT, raised where Python can unwind from them.

The stages' signal handler (`catch_signals`) raises `Interrupted` at once, except inside
`deferred()`: there it records the stop, and the stop is raised when the block ends. Code
that runs Python inside a C callback uses it: numba compiles (and loads its cache) through
llvmlite's ctypes callbacks, and an exception raised in a callback is printed as a
traceback and dropped, so the stop would be lost and the compile would go on.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from nnlab.core.errors import Interrupted

_depth = 0
_pending: list[Interrupted] = []


def stop(signal_name: str, signal_number: int) -> None:
    """Raise the stop now, or, inside `deferred()`, when the block ends."""
    stopping = Interrupted(signal_name, signal_number)
    if _depth:
        _pending.append(stopping)
        return
    raise stopping


def catch_signals() -> None:
    """SIGTERM (`kill`, `timeout`, a cancelled CI job) and SIGINT (Ctrl-C) raise `Interrupted`
    from here on: the stages' handler, and `nnlab join`'s."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def _on_signal(number: int, frame: FrameType | None) -> None:
    # Once is enough: a second Ctrl-C while cleaning up must not cut the cleanup short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop(signal.Signals(number).name, number)  # raises Interrupted, now or at a safe point


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block that a stop does not interrupt: the stop is raised as the block ends."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if not _depth and _pending:
        raise _pending.pop(0)
