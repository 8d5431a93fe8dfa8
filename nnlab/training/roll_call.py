"""The roll call before a training of several processes (docs/devices.md, "Several
machines"): process 0 (the train stage) waits for every other process (`nnlab join`), checks
that each has its commit, code, params and data, and when all have come lets them start JAX's
distributed runtime together, sending each the checkpoint to resume from. A process that does
not match is refused in one line and never reaches JAX's runtime, so it cannot disturb the
others; one that never comes is named when process 0 gives up. A handshake, not a runtime:
one JSON line each way over TCP, on the coordinator's port + 1 (JAX's takes the port)."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nnlab.core.errors import ProcessesError

MAX_LINE = 64 * 1024  # a hello is a few hundred bytes: anything longer is not one
READ_SECONDS = 10.0  # to send a hello once connected
RETRY_SECONDS = 0.2
# What must be equal, in the order a refusal names the first difference, and the fix.
CHECKS = {
    "processes": "this params.yaml says {model}.processes={mine}, process 0's says {theirs}: "
                 "use process 0's params.yaml",
    "commit": "this checkout is at commit {mine:.12}, process 0's at {theirs:.12}: "
              "`git checkout {theirs:.12}` (and `dvc pull`)",
    "code": "the code differs from process 0's at the same commit (uncommitted changes?): "
            "make both checkouts equal",
    "params": "params.yaml's {model} section, seed or data.dataset differ from process 0's: "
              "use the same params.yaml (the same commit and the same `-S` changes)",
    "data": "the data differs from process 0's (data/split, classes.json): `dvc pull` (or "
            "`dvc repro split`) at process 0's commit",
}


def roll_call_port(coordinator: str) -> tuple[str, int]:
    """(host, port) of the roll call: the coordinator's host, its port + 1."""
    host, _, port = coordinator.rpartition(":")
    return host.strip("[]"), int(port) + 1


def port_free(port: int) -> bool:
    """Whether a listening socket could bind `port` on every interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def _send(connection: socket.socket, message: dict[str, Any], payload: bytes = b"") -> None:
    connection.sendall(json.dumps({**message, "payload": len(payload)}).encode() + b"\n"
                       + payload)


def _receive(connection: socket.socket, deadline: float) -> tuple[dict[str, Any], bytes]:
    """One JSON line and the payload it announces; ValueError for anything else."""
    buffer = b""
    while b"\n" not in buffer:
        connection.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = connection.recv(4096)
        if not chunk:
            raise ValueError("the connection closed before a whole message")
        buffer += chunk
        if len(buffer) > MAX_LINE and b"\n" not in buffer[:MAX_LINE]:
            raise ValueError(f"a line over {MAX_LINE} bytes")
    line, _, payload = buffer.partition(b"\n")
    message = json.loads(line)
    if not isinstance(message, dict) or type(message.get("payload", 0)) is not int:
        raise ValueError("not a roll-call message")
    size = message.pop("payload", 0)
    while len(payload) < size:
        connection.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = connection.recv(min(1 << 20, size - len(payload)))
        if not chunk:
            raise ValueError("the connection closed inside a message")
        payload += chunk
    return message, payload


@dataclass
class Team:
    hosts: dict[int, str] = field(default_factory=dict)  # process id -> host name

    def describe(self) -> str:
        return ", ".join(f"{index}: {host}" for index, host in sorted(self.hosts.items()))


class RollCall:
    """Process 0's side: `with RollCall(...) as call: team = call.wait()`. Listening from
    `__enter__` (a port already taken is one line), answering each hello at once with a
    refusal, or holding it until every process has come; after `wait`, late hellos are refused
    until `__exit__`."""

    def __init__(self, model: str, coordinator: str, processes: int,
                 fingerprint: dict[str, str], timeout: float, checkpoint: bytes = b"",
                 stage: str | None = None) -> None:
        self.model, self.coordinator, self.processes = model, coordinator, processes
        self.fingerprint, self.timeout, self.checkpoint = fingerprint, timeout, checkpoint
        self.stage = stage or f"train@{model}"
        self.team = Team({0: socket.gethostname()})
        self._waiting: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._started = False
        self._closed = threading.Event()

    def __enter__(self) -> RollCall:
        host, port = roll_call_port(self.coordinator)
        if not port_free(port - 1):
            raise ProcessesError(f"{self.model}.coordinator={self.coordinator}: port "
                                 f"{port - 1} is taken on this machine (another training?); "
                                 f"choose a free port (the roll call takes the next one too)")
        both = socket.has_dualstack_ipv6()  # IPv4 and IPv6 joiners, as JAX's [::]:port
        try:
            self._server = socket.create_server(
                ("", port), family=socket.AF_INET6 if both else socket.AF_INET,
                dualstack_ipv6=both, backlog=16)
        except OSError as error:
            raise ProcessesError(f"{self.model}.coordinator={self.coordinator}: the roll call's "
                                 f"port {port} (the coordinator's + 1) is taken on this "
                                 f"machine ({error.strerror}); choose another coordinator "
                                 f"port") from None
        self._server.settimeout(0.05)  # how soon __exit__ stops the thread
        self._thread = threading.Thread(target=self._serve, name="roll-call", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._server.close()
        with self._lock:
            for connection in self._waiting.values():  # process 0 gave up, or failed
                with contextlib.suppress(OSError):
                    _send(connection, {"accepted": False, "reason": "process 0 stopped before "
                                       "every process had joined"})
                    connection.close()
            self._waiting.clear()

    def wait(self) -> Team:
        """Every process's host once all have come (each then told to start, with the
        checkpoint); ProcessesError naming the missing ids after `timeout` seconds."""
        missing = list(range(1, self.processes))
        print(f"{self.stage}: waiting up to {self.timeout:g} s for process"
              f"{'es' if len(missing) > 1 else ''} {_ids(missing)} of {self.processes}: on "
              f"{'their machines' if len(missing) > 1 else 'its machine'} run `nnlab join "
              f"--model {self.model} --process-id N` (coordinator {self.coordinator})",
              file=sys.stderr, flush=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._drop_the_gone()
                if len(self._waiting) == self.processes - 1:
                    self._start_all()
                    return self.team
            time.sleep(0.05)
        with self._lock:
            missing = [index for index in range(1, self.processes) if index not in self._waiting]
        raise ProcessesError(
            f"process{'es' if len(missing) > 1 else ''} {_ids(missing)} of {self.processes} "
            f"never joined within {self.timeout:g} s ({self.model}.join_timeout); on "
            f"{'their machines' if len(missing) > 1 else 'its machine'} run `nnlab join --model "
            f"{self.model} --process-id N` (coordinator {self.coordinator}), then this stage "
            f"again")

    def _drop_the_gone(self) -> None:
        """Forget a joined process whose connection closed (stopped while waiting)."""
        ready, _, _ = select.select(list(self._waiting.values()), [], [], 0)
        for index, connection in list(self._waiting.items()):
            if connection in ready and not _peek(connection):
                print(f"{self.stage}: process {index} left before the start",
                      file=sys.stderr, flush=True)
                connection.close()
                del self._waiting[index]
                del self.team.hosts[index]

    def _start_all(self) -> None:
        for connection in self._waiting.values():
            with contextlib.suppress(OSError):
                _send(connection, {"accepted": True, "hosts": self.team.hosts},
                      self.checkpoint)
                connection.close()
        self._waiting.clear()
        self._started = True

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        try:
            hello, _ = _receive(connection, time.monotonic() + READ_SECONDS)
            index, host = int(hello["process_id"]), str(hello["host"])[:255]
            reason = self._refusal(index, hello.get("fingerprint"))
        except (OSError, ValueError, KeyError, TypeError):
            connection.close()  # not a joiner: nothing to answer
            return
        if reason is not None:
            print(f"{self.stage}: refused process {index} from {host}: {reason}",
                  file=sys.stderr, flush=True)
            with contextlib.suppress(OSError):
                _send(connection, {"accepted": False, "reason": reason})
            connection.close()
            return
        with self._lock:
            self._waiting[index] = connection
            self.team.hosts[index] = host
        print(f"{self.stage}: process {index} of {self.processes} joined from {host}",
              file=sys.stderr, flush=True)

    def _refusal(self, index: int, fingerprint: object) -> str | None:
        with self._lock:
            if self._started:
                return f"process 0 already trains with all {self.processes} processes"
            if index in self._waiting:
                return (f"process {index} has already joined (from {self.team.hosts[index]}); "
                        f"give each machine its own --process-id")
        if not 1 <= index < self.processes:
            return (f"--process-id {index} is not one of {_ids(range(1, self.processes))} "
                    f"({self.model}.processes={self.processes})")
        if not isinstance(fingerprint, dict):
            return "its hello carries no fingerprint"
        for check, message in CHECKS.items():
            mine, theirs = str(fingerprint.get(check)), self.fingerprint[check]
            if mine != theirs:
                return message.format(model=self.model, mine=mine, theirs=theirs)
        return None


def _peek(connection: socket.socket) -> bytes:
    try:
        return connection.recv(1, socket.MSG_PEEK)
    except OSError:
        return b""


def _ids(indexes: Any) -> str:  # "1", "1 and 2", "1, 2 and 3"
    *first, last = list(indexes)
    return f"{', '.join(map(str, first))} and {last}" if first else str(last)


def answer(model: str, coordinator: str, process_id: int, fingerprint: dict[str, str],
           timeout: float) -> tuple[Team, bytes]:
    """A joining process's side: report to process 0 (trying again until `timeout` while
    it is not listening yet), then wait for the start. The team and process 0's checkpoint
    (b"" when it trains from scratch); ProcessesError, one line, when refused or nobody
    answers."""
    host, port = roll_call_port(coordinator)
    deadline = time.monotonic() + timeout
    hello = {"process_id": process_id, "host": socket.gethostname(),
             "fingerprint": fingerprint}
    with _connected(host, port, deadline, model, coordinator) as connection:
        _send(connection, hello)
        try:  # process 0, already listening, answers within its own timeout
            reply, payload = _receive(connection, time.monotonic() + timeout + 30)
        except (OSError, ValueError) as error:
            raise ProcessesError(f"process 0 at {coordinator} did not answer the roll call "
                                 f"({error}); is `dvc repro` running there, with this "
                                 f"{model}.coordinator?") from None
    if not reply.get("accepted"):
        raise ProcessesError(f"refused by process 0 at {coordinator}: {reply.get('reason')}")
    hosts = {int(index): str(name) for index, name in dict(reply.get("hosts", {})).items()}
    return Team(hosts), payload


@contextlib.contextmanager
def _connected(host: str, port: int, deadline: float, model: str, coordinator: str
               ) -> Iterator[socket.socket]:
    while True:
        try:
            connection = socket.create_connection(
                (host, port), timeout=max(deadline - time.monotonic(), 0.1))
            break
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ProcessesError(
                    f"nobody answers at {host}:{port}, process 0's roll call "
                    f"({model}.coordinator={coordinator}, port + 1), after "
                    f"{model}.join_timeout ({error.strerror or error}); start `dvc repro` there "
                    f"first, or check the address and firewall") from None
            time.sleep(RETRY_SECONDS)
    try:
        yield connection
    finally:
        connection.close()
