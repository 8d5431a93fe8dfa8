"""What ties the processes of one host's sweep commands together: a slot per command (so
two commands on one host draw different seeds) and a worker's tie to its command (a worker
never outlives the `nnlab sweep` that started it)."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

MAX_SLOTS = 1000
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def slots_dir(url: str, study: str) -> Path:
    """The folder of one study's slot locks on this host, whatever clone the command runs in."""
    key = zlib.crc32(f"{url}\n{study}".encode())
    return Path(tempfile.gettempdir()) / f"nnlab-{os.getuid()}" / f"sweep-{study}-{key:08x}"


@contextlib.contextmanager
def command_slot(url: str, study: str) -> Iterator[int]:
    """The lowest slot no other live sweep command of this study holds on this host, held
    until the block ends. A command run on its own gets slot 0 again: the same seeds."""
    folder = slots_dir(url, study)
    folder.mkdir(parents=True, exist_ok=True)
    handle: IO[str] | None = None
    for slot in range(MAX_SLOTS):
        handle = open(folder / f"slot-{slot}.lock", "a")  # noqa: SIM115 (held for the block)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield slot
        finally:
            handle.close()
        return
    raise RuntimeError(f"{MAX_SLOTS} sweep commands of study {study!r} run on this host")


def die_with_parent() -> None:
    """In a child, between fork and exec: SIGTERM when the parent dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def stop_own_group(number: int, frame: object) -> None:
    """A worker's SIGTERM handler: SIGINT to its whole process group (itself, its `dvc exp
    run`, the stage), as the sweep's own stop does; each of them then cleans up like after
    Ctrl-C. Once only: the stage ignores a second signal too."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(os.getpgrp(), signal.SIGINT)
