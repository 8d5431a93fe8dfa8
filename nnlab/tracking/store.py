"""The local MLflow store (`mlflow.db` at the project root, or any `sqlite:///` URI): made
once, whoever comes first (a stage, `make ui`, a sweep), and never left half-made.

- Creation is atomic: MLflow creates and migrates a new store in a temporary file, which is
  renamed into place, all under the project's lock. An interrupted creation leaves only the
  temporary file, which the next one removes.
- A store found below the current schema is being migrated by a process that does not take
  our lock (a bare `mlflow ui`, `mlflow db upgrade`): while its file changes or another
  process has it open, we wait. After that, a store with no runs (an interrupted first
  migration) is made again; one with runs is named in one line with the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from nnlab.core.errors import TrackingServerError

LOCK_FILE = ".mlflow.lock"  # next to the store; the stages' lock too (tracking.setup)
WAIT_SECONDS = 180.0  # for a migration by another process to end
_head: list[str] = []


class TrackingStoreError(TrackingServerError):
    """The local store cannot be used as it is (message names the file and the fix)."""


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` tracking URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def head_revision() -> str:
    """MLflow's current schema revision (alembic's head)."""
    if not _head:
        from mlflow.store.db.utils import _get_latest_schema_revision

        _head.append(str(_get_latest_schema_revision()))
    return _head[0]


def _connect(path: Path) -> sqlite3.Connection:
    # Read-write, never create: sqlite rolls back the journal a killed writer left (a
    # read-only connection could not, and would fail).
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)


def revision(path: Path) -> str | None:
    """The schema revision `path` records, or None (no file, not a store, being written)."""
    if not path.is_file():
        return None
    try:
        with contextlib.closing(_connect(path)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The project's store lock (a file lock: every process of ours, any `dvc` worker)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure(path: Path, wait: float = WAIT_SECONDS) -> None:
    """Make `path` a store at MLflow's current schema, creating it if it is missing.

    Raises:
        TrackingStoreError: the store has runs and is not at the current schema.
    """
    if revision(path) == head_revision():
        return
    with locked(path.parent):
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # an interrupted creation
            leftover.unlink(missing_ok=True)
        deadline = time.monotonic() + wait
        while True:
            found = revision(path)
            if found == head_revision():
                return
            if not path.exists():
                _create(path)
                return
            if (_changing(path) or _open_elsewhere(path)) and time.monotonic() < deadline:
                continue  # another process migrates it now
            if _has_runs(path):
                raise TrackingStoreError(
                    f"{path} holds runs (or cannot be read) and is at MLflow schema "
                    f"{found or 'unknown'}, not "
                    f"{head_revision()}: back it up, then run `mlflow db upgrade "
                    f"sqlite:///{path}` (or set MLFLOW_TRACKING_URI to another store)")
            _create(path)  # half-made by an interrupted first migration: nothing to lose
            return


def _changing(path: Path, seconds: float = 1.0) -> bool:
    """Whether the store's file (or its journal) changes within `seconds`."""
    def stamp() -> tuple[tuple[int, int], ...]:
        files = (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"))
        return tuple((f.stat().st_size, f.stat().st_mtime_ns) if f.exists() else (0, 0)
                     for f in files)

    before = stamp()
    time.sleep(seconds)
    return stamp() != before


def _open_elsewhere(path: Path) -> bool:
    """Whether another process has the store's file open (Linux's /proc; else False)."""
    target = str(path.resolve())
    for fds in Path("/proc").glob("[0-9]*/fd"):
        if fds.parent.name == str(os.getpid()):
            continue
        try:
            if any(os.readlink(fd) == target for fd in fds.iterdir()):
                return True
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return False


def _has_runs(path: Path) -> bool:
    """Whether the store holds anything of a user's: runs, or experiments besides Default.
    A store that cannot be read at all counts as holding them: it is never replaced."""
    try:
        with contextlib.closing(_connect(path)) as db:
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            runs = db.execute("SELECT count(*) FROM runs").fetchone()[0] \
                if "runs" in tables else 0
            experiments = db.execute("SELECT count(*) FROM experiments").fetchone()[0] \
                if "experiments" in tables else 0
    except sqlite3.Error:
        return True
    return bool(runs) or experiments > 1


def _create(path: Path) -> None:
    """A new store at `path`, atomically (we hold the lock): MLflow's own creation and
    migration, in a temporary file renamed into place after."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    made = SqlAlchemyStore(f"sqlite:///{temporary}", str(path.parent / "mlruns"))
    made.engine.dispose()
    # A killed migration leaves its journal: sqlite would replay it into the new file.
    for suffix in ("-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    os.replace(temporary, path)
