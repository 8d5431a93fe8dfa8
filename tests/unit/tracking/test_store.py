"""The local MLflow store is made once, atomically, and never left half-made: MLflow's own
migration interrupted for real at several points, a leftover temporary file, a store with
runs below the current schema, and a migration by another process that we wait for."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from nnlab.tracking import store


def _upgrade(path: Path) -> subprocess.Popen[bytes]:
    """MLflow migrating a new store in place, as a bare `mlflow ui` or `mlflow db upgrade`
    does: the process that does not take our lock."""
    return subprocess.Popen([sys.executable, "-m", "mlflow", "db", "upgrade",
                             f"sqlite:///{path}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _usable(path: Path) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiment_id = client.create_experiment("digits")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", 0.5, step=1)
    client.set_terminated(run.info.run_id, "FINISHED")


def test_a_missing_store_is_made_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    (tmp_path / ".mlflow.db.999.tmp").write_text("an interrupted creation")
    store.ensure(path)
    assert store.revision(path) == store.head_revision()
    assert list(tmp_path.glob(".mlflow.db.*.tmp")) == []
    _usable(path)
    before = path.stat().st_mtime_ns
    store.ensure(path)  # a store at the current schema is left alone
    assert path.stat().st_mtime_ns == before


# 5-6 s each (an `mlflow db upgrade` process, watched every 2 ms): `make test-fast` kills one
# at the file's creation, `make test` at every point.
@pytest.mark.parametrize("revisions", [0, pytest.param(4, marks=pytest.mark.slow),
                                       pytest.param(12, marks=pytest.mark.slow)])
def test_a_first_migration_interrupted_at_any_point_is_made_again(tmp_path: Path,
                                                                   revisions: int) -> None:
    """Killed once the file exists, or after 4 or 12 of MLflow's 35 migrations."""
    path = tmp_path / "mlflow.db"
    migration = _upgrade(path)
    seen: set[str | None] = set()
    deadline = time.monotonic() + 120
    while not path.exists() or len(seen - {None}) < revisions:
        assert migration.poll() is None, "the migration finished first"
        assert time.monotonic() < deadline
        seen.add(store.revision(path))
        time.sleep(0.002)
    migration.kill()
    migration.wait()
    assert store.revision(path) != store.head_revision()
    store.ensure(path, wait=5)
    assert store.revision(path) == store.head_revision()
    _usable(path)


def test_a_store_with_runs_below_the_schema_is_named_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    store.ensure(path)
    _usable(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    with pytest.raises(store.TrackingStoreError) as raised:
        store.ensure(path, wait=2)
    message = str(raised.value)
    assert str(path) in message and "mlflow db upgrade" in message and "back it up" in message
    assert "\n" not in message


def test_a_store_another_process_migrates_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    migration = _upgrade(path)
    try:
        deadline = time.monotonic() + 120
        while store.revision(path) is None:  # its migration has begun
            assert migration.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        inode = path.stat().st_ino
        store.ensure(path)
        assert store.revision(path) == store.head_revision()
        assert path.stat().st_ino == inode  # its store, migrated by it: not replaced
        assert migration.wait(timeout=120) == 0
    finally:
        if migration.poll() is None:
            migration.kill()
    _usable(path)


def test_a_writer_killed_mid_transaction_loses_nothing(tmp_path: Path) -> None:
    """A stage SIGKILLed while it writes leaves sqlite's journal: the next one rolls it
    back and keeps every run (a store is never made again because a read failed)."""
    path = tmp_path / "mlflow.db"
    store.ensure(path)
    _usable(path)
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, sys, time
db = sqlite3.connect({str(path)!r}, isolation_level=None)
db.execute("PRAGMA cache_size = 1")
db.execute("BEGIN IMMEDIATE")
db.execute("CREATE TABLE junk (x BLOB)")
for _ in range(2000):
    db.execute("INSERT INTO junk VALUES (randomblob(4000))")
print("written", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "written"
    writer.kill()
    writer.wait()
    assert path.with_name("mlflow.db-journal").exists()
    store.ensure(path, wait=2)
    assert store.revision(path) == store.head_revision()
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None and len(client.search_runs([experiment.experiment_id])) == 1
