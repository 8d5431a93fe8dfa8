"""SIGTERM and SIGINT, raised where Python can unwind from them.

The stages' signal handler (stages/_common.py) raises `Interrupted` at once, except inside
`deferred()`: there it records the stop, and the stop is raised when the block ends. Code
that runs Python inside a C callback uses it: numba compiles (and loads its cache) through
llvmlite's ctypes callbacks, and an exception raised in a callback is printed as a
traceback and dropped, so the stop would be lost and the compile would go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
