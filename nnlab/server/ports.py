"""A server's port, checked before anything starts: a taken port is one line and exit 2,
not a uvicorn traceback after the model loaded, or a link to somebody else's server."""

from __future__ import annotations

import errno
import socket


def ensure_free(host: str, port: int, command: str) -> None:
    """Raise ValueError naming the cause and the fix unless `command` can listen on
    host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is taken by another process: stop "
                                 f"it, or give `{command}` another --port") from None
            raise ValueError(f"cannot listen on {host}:{port} ({error.strerror}): check "
                             "--host and --port") from None
