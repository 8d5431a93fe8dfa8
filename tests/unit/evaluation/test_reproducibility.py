"""What "reproducible" means across machines (docs/experiments.md): another BLAS thread count
may change the last digits of a training, never more than its own interval. numpy_dnn's
matrix products go through NumPy's BLAS, whose thread count splits their sums differently."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_info, threadpool_limits

from nnlab.evaluation.uncertainty import accuracy_interval
from nnlab.models.base import new_model
from tests.support.helpers import project_params


def _test_accuracy(threads: int) -> tuple[int, int]:
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    labels = digits.target.astype(np.int64)
    params = project_params({"numpy_dnn": {"epochs": 40, "hidden_layers": [128]}})
    with threadpool_limits(limits=threads, user_api="blas"):
        model = new_model("numpy_dnn", params.model_params("numpy_dnn"), seed=7)
        model.fit((images[:1000], labels[:1000]), (images[1000:1300], labels[1000:1300]), 10)
        predicted = model.predict_proba(images[1300:]).argmax(axis=1)
    return int(np.sum(predicted == labels[1300:])), len(predicted)


def test_two_blas_thread_counts_stay_inside_each_others_intervals() -> None:
    one, two = _test_accuracy(1), _test_accuracy(4)
    assert any(info["user_api"] == "blas" for info in threadpool_info())
    low, high = accuracy_interval(*one)
    assert low <= two[0] / two[1] <= high, (one, two)
    low, high = accuracy_interval(*two)
    assert low <= one[0] / one[1] <= high, (one, two)
    assert one[0] / one[1] > 0.9  # it learned: the intervals are narrow, not vacuous
