"""nnlab/handoff/batching.py: concurrent requests share model calls, each gets its own rows,
and a failing call fails its requests only."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nnlab.handoff.batching import Batcher


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    def slow_model(images: np.ndarray) -> np.ndarray:
        time.sleep(0.02)  # while it runs, the other requests queue up
        return images.reshape(len(images), -1)[:, :1].astype(np.float32) * 2

    batcher = Batcher(slow_model, max_rows=64)
    results: dict[int, np.ndarray] = {}

    def request(index: int) -> None:
        images = np.full((1 + index % 3, 2, 2, 1), index, np.uint8)
        results[index] = batcher(images)

    threads = [threading.Thread(target=request, args=(index,)) for index in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(24):
        assert results[index].shape == (1 + index % 3, 1)
        assert (results[index] == 2 * index).all()
    assert batcher.calls < 24 / 2  # most requests rode along with others


def test_a_failing_call_fails_its_requests_and_the_next_ones_run() -> None:
    def model(images: np.ndarray) -> np.ndarray:
        if (images == 13).any():
            raise ValueError("thirteen")
        return images.reshape(len(images), -1).astype(np.float32)

    batcher = Batcher(model)
    with pytest.raises(ValueError, match="thirteen"):
        batcher(np.full((1, 1, 1, 1), 13, np.uint8))
    np.testing.assert_array_equal(batcher(np.full((2, 1, 1, 1), 4, np.uint8)), [[4], [4]])
