"""Helpers for the end-to-end tests: projects in temporary git repos, `dvc` commands, and one
trained baseline shared by every pytest worker.

Training the baseline (`dvc repro` of every model) is the costliest step of the suite, so it
is done once per run: the first worker that needs it builds it under a file lock, and each
test that changes a project works in its own copy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock

from nnlab.core.catalog import MODEL_NAMES

ROOT = Path(__file__).resolve().parents[2]
MODELS = list(MODEL_NAMES)
# Not copied into a new project: the workspace's outputs and caches at the top (data/ and
# models/ there are DVC outputs; nnlab/data and nnlab/models are code), and build caches.
TOP_LEVEL_IGNORE = {".git", ".venv", "data", "models", "mlflow.db", "mlflow.db-journal",
                    "mlartifacts", ".mlflow.lock", ".nnlab", ".pytest_cache", ".mypy_cache",
                    ".ruff_cache", ".test-artifacts"}
ANYWHERE_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def copy_ignore(folder: str, names: list[str]) -> set[str]:
    ignored = set(ANYWHERE_IGNORE(folder, names))
    if Path(folder) == ROOT:
        ignored |= TOP_LEVEL_IGNORE & set(names)
    if Path(folder) == ROOT / ".dvc":
        ignored |= {"cache", "tmp"} & set(names)
    return ignored


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
# Short training that still learns digits well enough for the accuracy floors in
# test_pipeline_e2e.FLOORS.
BASELINE_PARAMS = {
    "numpy_dnn": {"epochs": 3},
    "numpy_cnn": {"epochs": 4, "blocks": [{"filters": 8, "convs": 1}, {"filters": 16, "convs": 1}],
                  "dense_units": [32], "block_dropout": 0, "dense_dropout": 0},
    "keras_mlp": {"epochs": 5},  # dropout .45 and random shifts: slower to start
    "cnn": {"epochs": 4, "dense_units": [32]},
    "logreg": {"max_iter": 200},
}


def user_env() -> dict[str, str]:
    """The environment a user's shell gives commands: the venv first on PATH, and none of the
    variables that DVC or a test's MLflow store set."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
        env.pop(name, None)
    return env


def run(args: list[str], cwd: Path, check: bool = True,
        env: dict[str, str] | None = None) -> str:
    """Run a command in a project as a user would (user_env, plus `env`); its output."""
    env = {**user_env(), **(env or {})}
    # Output goes to a file, not a pipe: `dvc queue start` leaves daemon workers that inherit
    # its stdout, and reading a pipe to EOF would wait for them to finish the whole queue.
    with tempfile.TemporaryFile("w+") as log:
        result = subprocess.run(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                text=True, timeout=1800)
        log.seek(0)
        output = log.read()
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return output


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def git(project: Path, *args: str) -> str:
    return run([*GIT, *args], project).strip()


def wait_for_queue(project: Path, names: list[str], failing: frozenset[str] = frozenset(),
                   timeout: float = 1500) -> dict[str, str]:
    """Wait until every named queued experiment has finished; name -> its status in `dvc
    queue status` ("Success" or "Failed"); fails at once, with its log, if one not named in
    `failing` failed.

    `dvc queue status` starts DVC and asks the queue's workers (1.6 s, 0.6 CPU-seconds here):
    it is asked once each experiment expected to succeed has its git ref (refs/exps/.../<name>,
    which git lists in milliseconds), and every 30 s meanwhile, to catch a failure early."""
    expected = set(names) - failing
    deadline, next_ask = time.monotonic() + timeout, time.monotonic() + 30
    ready, status = False, {}
    while True:
        refs = git(project, "for-each-ref", "--format=%(refname)", "refs/exps").split()
        if not ready and {ref.rsplit("/", 1)[-1] for ref in refs} >= expected:
            next_ask, ready = time.monotonic(), True
        if time.monotonic() >= next_ask:
            next_ask = time.monotonic() + (5 if ready else 30)
            for line in run(["dvc", "queue", "status"], project).splitlines():
                words = line.split()
                status.update({name: words[-1] for name in names if name in words})
            for name in expected:
                assert status.get(name) != "Failed", run(["dvc", "queue", "logs", name],
                                                         project, check=False)
            if all(status.get(name) in ("Success", "Failed") for name in names):
                return status
        assert time.monotonic() < deadline, f"queue still busy: {status}"
        time.sleep(0.5)


def make_project(path: Path, changes: dict[str, dict[str, object]]) -> Path:
    """A copy of this repository, with `changes` merged into params.yaml's sections and no
    dvc.lock, committed in a new git repo."""
    shutil.copytree(ROOT, path, ignore=copy_ignore)
    params = yaml.safe_load((path / "params.yaml").read_text())
    for section, values in changes.items():
        params[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (path / "dvc.lock").unlink(missing_ok=True)
    return commit_all(path, "init")


def commit_all(path: Path, message: str) -> Path:
    """Make `path` a new git repo with everything in it committed."""
    run(["git", "init", "-q"], path)
    git(path, "add", "-A")
    git(path, "commit", "-qm", message)
    return path


def copy_project(source: Path, target: Path) -> Path:
    """A working copy of a trained project: git history, DVC cache, outputs and MLflow store.

    The MLflow store records absolute artifact locations under the project root; they are
    moved to the copy, so runs logged there land in the copy's own mlartifacts/.
    """
    shutil.copytree(source, target, symlinks=True,
                    ignore=shutil.ignore_patterns("tmp", "__pycache__"))  # .dvc/tmp: locks
    database = target / "mlflow.db"
    if database.exists():
        old, new = source.resolve().as_uri(), target.resolve().as_uri()
        with sqlite3.connect(database) as connection:
            tables = [row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for column in connection.execute(f"PRAGMA table_info('{table}')").fetchall():
                    if column[2].upper().startswith(("VARCHAR", "TEXT")):
                        connection.execute(
                            f'UPDATE "{table}" SET "{column[1]}" = '
                            f'replace("{column[1]}", ?, ?) WHERE "{column[1]}" LIKE ?',
                            (old, new, f"{old}%"))
        connection.close()
    return target


def ui_prepared(project: Path, timeout: float = 300) -> str:
    """Start `nnlab ui` (what `make ui` runs) on a free port, wait for its link line (the
    store is then made and dead runs ended), stop it; every line it printed."""
    import signal

    from nnlab.server.settings import free_port

    log = project.parent / f"{project.name}-ui.log"  # read through its own handle
    with open(log, "w") as out:
        ui = subprocess.Popen(["nnlab", "ui", "--port", str(free_port())], cwd=project,
                              env=user_env(), stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while "MLflow UI on" not in (output := log.read_text()) and ui.poll() is None:
                assert time.monotonic() < deadline, f"nnlab ui printed no link:\n{output}"
                time.sleep(0.1)
        finally:
            if ui.poll() is None:
                os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    output = log.read_text()
    assert "MLflow UI on" in output and "workflowType=machine_learning" in output, output
    return output


@contextlib.contextmanager
def serving(args: list[str], cwd: Path, port: int, log: Path,
            env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a server command (`nnlab ui`, `nnlab serve`) in its own session until its /health
    on `port` answers 200, for the block; then SIGTERM its group. Its output goes to `log`,
    read through its own handle (reading the child's would move the child's offset)."""
    import signal

    from nnlab.server.process import http_status

    with open(log, "w") as out:
        server = subprocess.Popen(args, cwd=cwd, env=env or user_env(), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while http_status(f"http://127.0.0.1:{port}/health") != 200:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):  # the block may have stopped it
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def listening(port: int) -> Any:
    """The process listening on `port` (psutil; one of them when several share it)."""
    import psutil

    (pid,) = {c.pid for c in psutil.net_connections("tcp")
              if c.status == "LISTEN" and c.laddr.port == port and c.pid}
    return psutil.Process(pid)


RECORDER = ROOT / "tests" / "support" / "import_recorder"


def import_recording(folder: Path) -> dict[str, str]:
    """The environment under which each stage of a `dvc repro` writes the project files it
    imported to folder/imports/<stage>.json (tests/support/import_recorder)."""
    path = os.pathsep.join(filter(None, [str(RECORDER), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "NNLAB_IMPORT_LOG": str(folder / "imports")}


def shared_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository with BASELINE_PARAMS, trained by one `dvc repro` and committed, made once
    per test run whichever worker asks first. Its `dvc repro` output is in repro.log beside it,
    and what each stage imported in imports/<stage>.json (import_recording).
    Read it; copy it (copy_project) to change anything."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "shared-baseline"
    project, log, failure = folder / "project", folder / "repro.log", folder / "failed.log"
    folder.mkdir(exist_ok=True)
    with FileLock(str(folder / "build.lock")):
        if failure.exists():
            pytest.fail(f"the shared baseline failed to build earlier:\n{failure.read_text()}")
        if not log.exists():
            try:
                make_project(project, BASELINE_PARAMS)
                output = run(["dvc", "repro"], project, env=import_recording(folder))
                git(project, "add", "-A")
                git(project, "commit", "-qm", "trained baseline")
            except BaseException as error:
                failure.write_text(str(error)[-6000:])
                raise
            log.write_text(output)
    return project
