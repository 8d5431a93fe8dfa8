"""Where a study lives: the storage URL (a SQLite file by default, PostgreSQL, or Optuna's gRPC
proxy from `make server`), opened with the heartbeat that makes a killed worker's trial fail
and be retried, and checked with one clear line when it does not answer."""

from __future__ import annotations

import contextlib
import re
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

DEFAULT_FILE = ".nnlab/optuna.db"  # relative to the project root: the default storage
HEARTBEAT_SECONDS = 20  # a RUNNING trial whose worker is silent for 3x this becomes FAIL
MAX_RETRY = 2  # times a heartbeat-failed trial is run again (Optuna's retry callback)
CREATE_ATTEMPTS = 5  # opens of a storage whose tables another process is making at once


class StorageError(RuntimeError):
    """The study's storage does not answer or refuses us (the message names the URL and the
    fix)."""


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Heartbeats and fail_stale_trials have been "experimental" since Optuna 2.9; we rely on
    them knowingly, so their warnings are not shown to users."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def masked(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _grpc_address(url: str) -> tuple[str, int]:
    match = re.fullmatch(r"grpc://([^:/]+):(\d+)/?", url)
    if match is None:
        raise StorageError(f"{url}: expected grpc://HOST:PORT, e.g. grpc://127.0.0.1:13000")
    return match.group(1), int(match.group(2))


def has_heartbeat(url: str) -> bool:
    """Optuna's heartbeat lives in RDB storages; its gRPC proxy client does not carry it."""
    return not url.startswith("grpc://")


def open_storage(url: str, heartbeat_seconds: int | None = None,
                 retry: bool = False) -> BaseStorage:
    """An Optuna storage for `url`, with a heartbeat every `heartbeat_seconds` (RDB only): a
    RUNNING trial whose heartbeat stops for 3x that becomes FAIL, and with `retry` a copy of
    it is queued (RetryHeartbeatStaleTrialCallback) for a live worker to run.

    Raises:
        StorageError: the storage does not answer (names the URL and the fix).
    """
    import optuna

    if url.startswith("grpc://"):
        host, port = _grpc_address(url)
        _check_port(url, host, port)
        return optuna.storages.GrpcStorageProxy(host=host, port=port)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY) \
            if retry else None
    engine: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}  # workers and stages write at once
    elif url.startswith("postgresql"):
        engine["connect_args"] = {"connect_timeout": 5}
    attempt = 0
    while True:
        attempt += 1
        try:
            with quiet():
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine,
                    heartbeat_interval=heartbeat_seconds if heartbeat_seconds else None,
                    grace_period=3 * heartbeat_seconds if heartbeat_seconds else None,
                    heartbeat_stale_trial_callback=callback,
                )
        except Exception as error:  # SQLAlchemy's OperationalError, ArgumentError, ...
            if attempt < CREATE_ATTEMPTS and _made_at_once(error):
                time.sleep(0.2 * attempt)  # another process is making the tables: let it
                continue
            first = str(error).strip().splitlines()[0] if str(error).strip() \
                else type(error).__name__
            raise StorageError(
                f"Optuna storage {masked(url)} does not answer ({first[:200]}); start it "
                "(`make server` for the team stack's), or pass another --storage, e.g. "
                f"sqlite:///{DEFAULT_FILE}") from None


def _made_at_once(error: Exception) -> bool:
    """Whether `error` is Optuna creating its tables in a new database that another process
    is creating at the same moment (two commands started together on a new SQLite file)."""
    text = str(error)
    return "already exists" in text or (
        "UNIQUE constraint failed" in text and "alembic_version" in text) or (
        "duplicate key" in text and "alembic_version" in text)


def _check_port(url: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as error:
        raise StorageError(
            f"Optuna storage {url} does not answer ({error.strerror or error}); start the team "
            "stack there (`make server`), or pass another --storage") from None
