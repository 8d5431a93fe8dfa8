"""A real HTTP server on 127.0.0.1 (ephemeral port) that serves in-memory files.

It speaks enough HTTP for the download code: GET with `Range: bytes=N-` (206 replies), 404
for unknown paths, and two faults a real network has: a connection dropped halfway through
a file, and a 503. Every request is recorded so tests can assert what the client did.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Loopback:
    url: str  # http://127.0.0.1:<port>
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    drop_once: set[str] = field(default_factory=set)  # paths whose first reply stops halfway
    fail_once: set[str] = field(default_factory=set)  # paths whose first reply is a 503
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)

    def serve(self, path: str, body: bytes) -> str:
        """Serve `body` at `path`; return its full URL."""
        self.files[path] = body
        return self.url + path


def _handler(state: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            if self.path in state.fail_once:
                state.fail_once.discard(self.path)
                self.send_error(503, "Service Unavailable")
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            start = int(match.group(1)) if match else 0
            if start >= len(body) and match:
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206 if match else 200)
            if match:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if self.path in state.drop_once:
                state.drop_once.discard(self.path)
                self.wfile.write(body[start : start + (len(body) - start) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    return Handler


@contextmanager
def loopback_server() -> Iterator[Loopback]:
    state = Loopback(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # a short poll interval: shutdown() waits for the next poll (0.5 s by default)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def coordinator_address() -> str:
    """127.0.0.1:P with P and P + 1 free: a training of several processes' coordinator (JAX's
    port) and its roll call (the next one)."""
    from nnlab.training.roll_call import port_free

    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65534 and port_free(port) and port_free(port + 1):
            return f"127.0.0.1:{port}"
    raise AssertionError("no two free ports in a row")


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
