"""Server processes of the team stack: start one in its own session, find it again, stop it.

Each server process runs in its own session (process group) with its log in `logs/` and its
pid (plus the pid's start time, since pids are reused) in `pids/`, so that a later
`nnlab server stop` finds and stops the whole group, helpers included. Readiness is always
the engine's own health check, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from nnlab.server.settings import ServerError, Settings, port_is_free

EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Exit)\b")  # a traceback's last line
START_TIMEOUT = 180.0  # seconds; MLflow's first start on PostgreSQL migrates its schema


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Process:
    """A server process this package started, found again through its pid file."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.pid_file = settings.path("pids") / f"{name}.json"
        self.log = settings.path("logs") / f"{name}.log"
        self.cwd = settings.data_dir

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        import psutil

        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv[:4])} ...\n")
            log.flush()
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.cwd, env={**os.environ, **(env or {})},
            )
        started = psutil.Process(process.pid).create_time()
        self.pid_file.write_text(json.dumps({"pid": process.pid, "started": started}) + "\n")

    def running(self) -> bool:
        return self._process() is not None

    def _process(self):
        import psutil

        try:
            record = json.loads(self.pid_file.read_text())
            process = psutil.Process(int(record["pid"]))
            if abs(process.create_time() - float(record["started"])) > 1.0:
                return None  # the pid was reused by another program
            return None if process.status() == psutil.STATUS_ZOMBIE else process
        except (OSError, ValueError, KeyError, psutil.Error):
            return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole process group, then SIGKILL to what is left after `timeout`."""
        self.await_exit(self.terminate(), timeout)

    def terminate(self) -> list[Any]:
        """SIGTERM to the whole process group; the processes to wait for (none if it was not
        running)."""
        process = self._process()
        if process is None:
            return []
        group = [process, *process.children(recursive=True)]
        with _suppress_lookup():
            os.killpg(process.pid, signal.SIGTERM)
        return group

    def await_exit(self, group: list[Any], timeout: float = 15.0) -> None:
        """Wait for what `terminate` returned to exit; SIGKILL what is left after `timeout`."""
        import psutil

        _, alive = psutil.wait_procs(group, timeout=timeout)
        for leftover in alive:
            with _suppress_lookup():
                leftover.kill()
        psutil.wait_procs(alive, timeout=5)
        self.pid_file.unlink(missing_ok=True)

    def wait_until(self, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                raise ServerError(f"it exited at start: {self.last_line()} (log: {self.log})")
            if time.monotonic() > deadline:
                raise ServerError(f"it did not answer within {timeout:.0f} s (log: {self.log})")
            time.sleep(0.1)

    def last_line(self) -> str:
        try:  # this start's lines only: the log is appended to at every start
            text = self.log.read_text(errors="replace").rsplit("\n--- ", 1)[-1]
        except OSError:
            return "no log"
        lines = [line for line in text.splitlines()[1:] if line.strip()]
        exceptions = [line for line in lines if EXCEPTION_LINE.match(line)]
        errors = [line for line in lines if ("error" in line.lower() or "fail" in line.lower())
                  and "sqlalche.me" not in line]
        return (exceptions or errors or lines or ["no output"])[-1].strip()[:300]


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        import psutil

        return kind is not None and issubclass(kind, ProcessLookupError | psutil.NoSuchProcess)


def check_port(port: int, host: str, part: str, option: str) -> None:
    if not port_is_free(port, "0.0.0.0" if host in ("0.0.0.0", "::") else host):
        raise ServerError(f"port {port} on {host} is taken by another program: stop it, or "
                          f"give {part} another port with {option} N")


class ProcessPart:
    """A part of the stack that is one server process of ours. Subclasses say how to launch
    it (`command`) and how it shows it is ready (`answers`)."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = Process(self.name, settings)

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        argv, env = self.command()
        self.process.spawn(argv, env)
        self.process.wait_until(self.is_up)

    def is_up(self) -> bool:
        return self.process.running() and self.answers()

    def stop(self) -> None:
        self.process.stop()
