"""Each epoch's metrics in the MLflow run while a training runs, not only at its end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any


class LiveMetrics:
    """Each epoch's metrics (step = epoch, the time it ended) sent to a run as the epoch
    ends, by MLflow's asynchronous logging: training never waits for the store or the
    server, and a server that is down for a while only delays them (its client retries).

    `complete(history)` at the end makes sure the run holds every epoch exactly once: it waits
    for the pending sends, reads the steps the run has, and logs the missing ones in one
    synchronous batch. A send that failed, or one a killed process never made (its epochs
    come back from a checkpoint), is made up for there."""

    def __init__(self, run_id: str) -> None:
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()
        self._pending: list[Any] = []
        self._times: dict[int, int] = {}

    @staticmethod
    def _metrics(row: Mapping[str, float], timestamp: int) -> list[Any]:
        from mlflow.entities import Metric

        return [Metric(key, float(value), timestamp, int(row["epoch"]))
                for key, value in row.items() if key != "epoch"]

    def log(self, row: Mapping[str, float]) -> None:
        timestamp = int(time.time() * 1000)
        self._times[int(row["epoch"])] = timestamp
        self._pending.append(self.client.log_batch(
            self.run_id, metrics=self._metrics(row, timestamp), synchronous=False))

    def complete(self, history: list[dict[str, float]]) -> None:
        from mlflow.exceptions import MlflowException

        for operation in self._pending:
            with contextlib.suppress(MlflowException):
                operation.wait()
        self._pending = []
        keys = sorted({key for row in history for key in row if key != "epoch"})
        logged = {key: {metric.step for metric in self.client.get_metric_history(
            self.run_id, key)} for key in keys}
        missing = []
        for row in history:
            epoch = int(row["epoch"])
            timestamp = self._times.get(epoch) or int(time.time() * 1000)
            missing += [metric for metric in self._metrics(row, timestamp)
                        if metric.step not in logged.get(metric.key, set())]
        for start in range(0, len(missing), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=missing[start:start + 1000],
                                  synchronous=True)
