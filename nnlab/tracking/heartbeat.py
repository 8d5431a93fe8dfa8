"""Which MLflow runs still have a process behind them, so that none stays RUNNING once its
process is gone (SIGKILL, a power cut, a lost machine), whether or not anything reruns.

Each run records its process (pid, the pid's start time, host) and a liveness time that a
thread refreshes every BEAT_SECONDS while the run is open. A RUNNING run is dead when, on
this host, its process no longer runs; on another host, when its liveness time is older than
GRACE_SECONDS. Dead runs end FAILED with tag nnlab.end_reason "process died" (a checkpoint
resume reopens the same run). They are ended by every stage as it starts, by `make ui`, by
`nnlab sweep`, and on the team stack by its janitor, every minute.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

PID_TAG, STARTED_TAG, HOST_TAG = "nnlab.pid", "nnlab.pid_started", "nnlab.host"
ALIVE_TAG = "nnlab.alive"  # unix time of the last beat
END_TAG = "nnlab.end_reason"
BEAT_SECONDS = 60.0
GRACE_SECONDS = 300.0  # five missed beats


def owner_tags() -> dict[str, str]:
    """This process: pid, its start time (pids are reused), host, and a first beat."""
    import psutil

    return {PID_TAG: str(os.getpid()), STARTED_TAG: f"{psutil.Process().create_time():.2f}",
            HOST_TAG: socket.gethostname(), ALIVE_TAG: f"{time.time():.0f}"}


def owner_alive(tags: Mapping[str, str], now: float | None = None) -> bool:
    """Whether the process recorded in a run's tags still runs (True when nothing tells)."""
    import psutil

    if tags.get(HOST_TAG) != socket.gethostname() or PID_TAG not in tags:
        try:  # another machine's run: its beats tell
            return (now or time.time()) - float(tags[ALIVE_TAG]) < GRACE_SECONDS
        except (KeyError, ValueError):
            return True  # a run of an older version, or not ours: only its machine can tell
    try:
        process = psutil.Process(int(tags[PID_TAG]))
        return abs(process.create_time() - float(tags.get(STARTED_TAG, "0"))) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def end_dead_runs(client: Any = None, experiment_ids: Sequence[str] | None = None,
                  now: float | None = None) -> list[str]:
    """End FAILED (tag nnlab.end_reason "process died") every RUNNING run whose process is
    gone, in `experiment_ids` or in every active experiment. Returns the run ids it ended."""
    import mlflow

    client = client or mlflow.MlflowClient()
    if experiment_ids is None:
        experiment_ids = [experiment.experiment_id for experiment in
                          client.search_experiments(max_results=1000)]
    ended: list[str] = []
    if not experiment_ids:
        return ended
    for run in client.search_runs(list(experiment_ids), "attributes.status = 'RUNNING'",
                                  max_results=5000):
        if owner_alive(run.data.tags, now):
            continue
        client.set_tag(run.info.run_id, END_TAG, "process died")
        client.set_terminated(run.info.run_id, "FAILED")
        ended.append(run.info.run_id)
    return ended


@contextlib.contextmanager
def beating(run_id: str, every: float = BEAT_SECONDS) -> Iterator[None]:
    """Refresh the run's liveness time every `every` seconds while the block runs, from a
    thread of its own (a beat that fails, the server being down, is skipped)."""
    import mlflow

    client = mlflow.MlflowClient()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            with contextlib.suppress(Exception):
                client.set_tag(run_id, ALIVE_TAG, f"{time.time():.0f}")

    thread = threading.Thread(target=beat, name="nnlab-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
