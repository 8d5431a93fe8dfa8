"""Start, inspect and stop the whole team stack, and point this repo's DVC remote at it.

Start is idempotent (a part that already answers is left alone) and all or nothing: when a
part fails, the parts this start had started are stopped again and the error names the part.
The stack holds no state outside its data dir: PostgreSQL and S3 keep everything, so a stop
and a start lose nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nnlab.server import dvc_remote
from nnlab.server.engines import Janitor, MlflowServer, OptunaProxy, S3Gateway, Seaweed
from nnlab.server.postgres import Postgres
from nnlab.server.process import ProcessPart
from nnlab.server.settings import (
    Credentials,
    ServerError,
    Settings,
    env_lines,
    is_loopback,
    masked,
    write_private,
)
from nnlab.tracking.server_check import experiment_link

Report = Callable[[str], None]


class Part(Protocol):
    name: str

    def start(self) -> None: ...
    def is_up(self) -> bool: ...
    def stop(self) -> None: ...
    def address(self) -> str: ...


def parts(settings: Settings, credentials: Credentials) -> list[Part]:
    """The stack's parts, in start order."""
    postgres = Postgres(settings, credentials.optuna_password)
    return [postgres, Seaweed(settings), S3Gateway(settings, credentials),
            MlflowServer(settings, credentials, postgres), OptunaProxy(settings, postgres),
            Janitor(settings, credentials)]


def start(data_dir: Path, options: dict[str, Any], project: Path | None,
          report: Report = print) -> Settings:
    """Start every part that does not answer yet; write the env file and the DVC remote."""
    saved = Settings.load(data_dir)
    settings = (saved or Settings(data_dir=data_dir)).merged(options)
    settings.check()
    credentials = Credentials.load_or_create(data_dir)
    if saved is not None and _public(saved) != _public(settings) and \
            any(part.is_up() for part in parts(saved, credentials)):
        raise ServerError("the stack already runs with other settings: `nnlab server stop` "
                          "first, then start it with the new ones")
    settings.assign_internal_ports()
    settings.save()
    started: list[Part] = []
    current = None
    try:
        for part in parts(settings, credentials):
            current = part
            if part.is_up():
                report(f"{part.name:<12} already up   {part.address()}")
                continue
            began = time.perf_counter()
            started.append(part)  # before start(): a half-started part is stopped too
            part.start()
            report(f"{part.name:<12} up in {time.perf_counter() - began:4.1f} s  "
                   f"{part.address()}")
    except BaseException as error:
        undone = [part.name for part in started if part is not current]
        for part in reversed(started):
            part.stop()
        if not isinstance(error, Exception):
            raise
        detail = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ServerError(f"{current.name if current else 'the stack'} failed to start: "
                          f"{detail}; stopped what this start had started "
                          f"({', '.join(undone) or 'nothing'})") from None
    lines = env_lines(settings, credentials, _optuna_url(settings, credentials))
    write_private(settings.path("env"), "\n".join(lines) + "\n")
    if project is not None:
        report(dvc_remote.configure(project, settings, credentials))
    _summary(settings, credentials, report)
    return settings


def _optuna_url(settings: Settings, credentials: Credentials) -> str:
    return Postgres(settings, credentials.optuna_password).tcp_url()


def _public(settings: Settings) -> tuple[object, ...]:
    return (settings.host, settings.mlflow_port, settings.s3_port, settings.grpc_port,
            settings.postgres_port, settings.database_url, settings.auth, settings.insecure)


def _summary(settings: Settings, credentials: Credentials, report: Report) -> None:
    report("")
    if not is_loopback(settings.host):
        proxy = ("also exposed, WITHOUT authentication" if settings.proxy_host == settings.host
                 else "kept on 127.0.0.1: it has no authentication (--insecure exposes it)")
        report(f"Exposed on {settings.host}: MLflow :{settings.mlflow_port} "
               f"({'basic auth, user admin' if settings.auth else 'NO authentication'}), "
               f"S3 :{settings.s3_port} (key {masked(credentials.s3_access_key)}); "
               f"Optuna gRPC proxy :{settings.grpc_port} {proxy}; PostgreSQL "
               f":{settings.postgres_port} to Optuna's database only, by password.")
    report(f"Credentials: {settings.path('credentials.json')} (mode 0600).")
    report(f"In each shell that should log to the team server "
           f"(the lines are in {settings.path('env')}):")
    report(f"  source {settings.path('env')}")
    for line in env_lines(settings, credentials, _optuna_url(settings, credentials)):
        if line.startswith("export "):
            name, _, value = line.partition("=")
            secret = "PASSWORD" in name
            value = masked(value) if secret else re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@",
                                                        value)  # a URL's password
            report(f"    {name}={value}")
    report(f"MLflow UI: {experiment_link(settings.mlflow_uri, None)}")


@dataclass(frozen=True)
class PartStatus:
    name: str
    up: bool
    address: str


def status(data_dir: Path) -> list[PartStatus]:
    settings = Settings.load(data_dir)
    if settings is None:
        return []
    credentials = Credentials.load_or_create(data_dir)
    return [PartStatus(part.name, part.is_up(), part.address())
            for part in parts(settings, credentials)]


def stop(data_dir: Path, report: Report = print) -> bool:
    """Stop every part, last started first. False when the stack was never started here."""
    settings = Settings.load(data_dir)
    if settings is None:
        return False
    credentials = Credentials.load_or_create(data_dir)
    ours = []
    for part in reversed(parts(settings, credentials)):
        if getattr(part, "external", False):
            report(f"{part.name:<12} external: left running")
        else:
            ours.append((part, part.is_up()))
    # Every server process of ours gets its SIGTERM at once: each takes 1 to 3 s to shut
    # down gracefully (10 s one after the other). PostgreSQL, which they write to, stops
    # after them.
    began = time.perf_counter()
    exiting = {part.name: part.process.terminate() for part, _ in ours
               if isinstance(part, ProcessPart)}
    for part, was_up in ours:
        if isinstance(part, ProcessPart):
            part.process.await_exit(exiting[part.name])
        else:
            part.stop()
        report(f"{part.name:<12} " + (f"stopped after {time.perf_counter() - began:.1f} s"
                                      if was_up else "was not running"))
    return True
