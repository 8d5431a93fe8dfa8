"""Third-party C++ log lines that read like problems but are not, kept out of the console.

TensorFlow prints some lines from C++ straight to file descriptor 2, before its own log
settings apply (TF_CPP_MIN_LOG_LEVEL does not reach them): absl's "All log messages before
absl::InitializeLog()" warning, the oneDNN notice, and an `E0000 ... NodeDef mentions
attribute use_unbounded_threadpool` line that tf.data prints when it builds a map. Inside
`filtered_stderr()`, descriptor 2 goes through a pipe; a thread forwards every line except
those, so any other warning or error still shows, in order.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

STARTS = (b"WARNING: All log messages", b"I0000 ", b"E0000 ", b"[Gloo] Rank ")  # NOISE's
NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR|I0000 .*\] oneDNN custom operations are on.*"
    rb"|E0000 .*\] NodeDef mentions attribute use_unbounded_threadpool .*"
    # JAX's CPU collectives (several processes), on stdout, once they are all connected
    rb"|\[Gloo\] Rank \d+ is connected to (\d+) peer ranks\. Expected number of connected "
    rb"peer ranks is : \1)$")


def filtered_stderr() -> contextlib.AbstractContextManager[None]:
    """Drop NOISE lines from descriptor 2 (C++ and Python alike) inside the block."""
    return filtered(2)


@contextlib.contextmanager
def filtered(descriptor: int) -> Iterator[None]:
    """Drop NOISE lines from `descriptor` (1: stdout, 2: stderr) inside the block."""
    stream = sys.stdout if descriptor == 1 else sys.stderr
    try:
        stream.flush()
        saved = os.dup(descriptor)
    except (OSError, ValueError):  # no such descriptor (a closed stream): nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, descriptor)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, saved), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
        os.dup2(saved, descriptor)  # closes the pipe's last write end: the forwarder ends
        forwarder.join(timeout=10)
        os.close(saved)


def _forward(read_end: int, target: int) -> None:
    pending = b""
    with open(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
            if pending and not any(pending.startswith(start) or start.startswith(pending)
                                   for start in STARTS):
                kept, pending = kept + pending, b""  # a progress bar's line: show it now
            if kept:
                os.write(target, kept)
    if pending and not NOISE.match(pending):
        os.write(target, pending)
