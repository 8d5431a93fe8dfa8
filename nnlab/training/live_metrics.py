"""Each epoch's metrics in the MLflow run while a training runs, not only at its end."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

SEND_EVERY = 2.0  # seconds: epochs shorter than this go out together


class Pacer:
    """Says when something done at the end of each epoch is due: at the first epoch, then
    once at least `every` seconds have passed since it was last done. Epochs longer than that
    get it every epoch; a run of 20 ms epochs on digits gets it every 2 s instead of 100
    times."""

    def __init__(self, every: float = SEND_EVERY) -> None:
        self.every = every
        self._last = -float("inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.every:
            return False
        self._last = now
        return True


class LiveMetrics:
    """Each epoch's metrics (step = epoch, the time it ended) sent to a run as the epoch
    ends, by a thread of its own: training never waits for the store or the server, and a
    server that is down for a while only delays them (MLflow's client retries). Epochs
    shorter than SEND_EVERY go out together, each with its own time stamp.

    `complete(history)` at the end makes sure the run holds every epoch exactly once. When
    every send succeeded and every epoch is this process's, it sends what is left in one
    batch; otherwise (a send failed, or epochs came back from a checkpoint that a killed
    process may or may not have sent) it reads the steps the run has and sends the missing
    ones. (MLflow's own asynchronous logging made every stage wait up to a second at
    `end_run` for its worker thread to notice the end.)"""

    def __init__(self, run_id: str, pacer: Pacer | None = None) -> None:
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()
        self.pacer = pacer or Pacer()
        self._waiting: list[Any] = []  # metrics of epochs not handed to the thread yet
        self._times: dict[int, int] = {}
        self._queue: queue.Queue[list[Any] | None] = queue.Queue()
        self._sent: set[int] = set()  # epochs whose metrics the run has
        self._failed = False
        self._thread: threading.Thread | None = None

    @staticmethod
    def _metrics(row: Mapping[str, float], timestamp: int) -> list[Any]:
        from mlflow.entities import Metric

        return [Metric(key, float(value), timestamp, int(row["epoch"]))
                for key, value in row.items() if key != "epoch"]

    def log(self, row: Mapping[str, float]) -> None:
        timestamp = int(time.time() * 1000)
        self._times[int(row["epoch"])] = timestamp
        self._waiting += self._metrics(row, timestamp)
        if self.pacer.due():
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                                name="nnlab-live-metrics")
                self._thread.start()
            self._queue.put(self._waiting)
            self._waiting = []

    def _send_loop(self) -> None:
        while (metrics := self._queue.get()) is not None:
            try:
                self._log(metrics)
                self._sent |= {metric.step for metric in metrics}
            except Exception:  # noqa: BLE001 - any failure: complete() makes up for it
                self._failed = True
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        """Wait until what was handed to the thread has been sent (or has failed)."""
        self._queue.join()

    def _log(self, metrics: list[Any]) -> None:
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def complete(self, history: list[dict[str, float]]) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()  # the sends still under way (a server's retries included)
            self._thread = None
        epochs = {int(row["epoch"]) for row in history}
        waiting = {metric.step for metric in self._waiting}
        if not self._failed and epochs <= self._sent | waiting:
            self._log(self._waiting)
            self._sent |= waiting
            self._waiting = []
            return
        self._waiting = []  # sent below with the rest that is missing
        keys = sorted({key for row in history for key in row if key != "epoch"})
        logged = {key: {metric.step for metric in self.client.get_metric_history(
            self.run_id, key)} for key in keys}
        missing = []
        for row in history:
            timestamp = self._times.get(int(row["epoch"])) or int(time.time() * 1000)
            missing += [metric for metric in self._metrics(row, timestamp)
                        if metric.step not in logged.get(metric.key, set())]
        self._log(missing)
        self._failed = False
        self._sent |= epochs
