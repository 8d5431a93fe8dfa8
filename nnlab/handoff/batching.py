"""Adaptive batching for `nnlab serve`: the images of requests that arrive together go
through the model in one call.

MLflow's scoring server runs each request in its own thread. Each thread puts its images on
a queue and waits; one thread runs the model, on everything queued while the previous batch
ran, up to `max_rows` images. A lone request runs at once (no timer, unlike MLServer's
`max_batch_time`), so batching adds no latency; under load the per-call cost is paid once
per batch, not once per request, and the model never runs twice at the same time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Job:
    images: np.ndarray  # (n, H, W, C) uint8
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """`batcher(images)` = `predict(images)`, called from any thread; concurrent calls share
    model calls of at most `max_rows` images (one larger request runs alone)."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_rows: int = 256) -> None:
        self.predict, self.max_rows = predict, max_rows
        self.calls = 0  # model calls made: what batching saves, for the tests
        self._queue: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._run, name="nnlab-batcher", daemon=True).start()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        job = _Job(images)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _next_batch(self) -> list[_Job]:
        """The oldest job, and the ones queued behind it, up to max_rows images."""
        jobs = [self._queue.get()]
        rows = len(jobs[0].images)
        while rows < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
            rows += len(job.images)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._next_batch()
            try:
                images = jobs[0].images if len(jobs) == 1 else \
                    np.concatenate([job.images for job in jobs])
                out = np.asarray(self.predict(images))
                self.calls += 1
                start = 0
                for job in jobs:
                    job.result = out[start:start + len(job.images)]
                    start += len(job.images)
            except Exception as error:  # every waiting request gets it, the thread goes on
                for job in jobs:
                    job.error = error
            finally:
                for job in jobs:
                    job.done.set()
