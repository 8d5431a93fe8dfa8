from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnlab.evaluation import classification_metrics, write_confusion


def test_metrics_on_a_hand_checked_confusion() -> None:
    # actual:    0 0 0 1 1 2
    # predicted: 0 0 1 1 2 2
    labels = np.array([0, 0, 0, 1, 1, 2], dtype=np.int64)
    predicted = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.full((6, 3), 0.1)
    probabilities[np.arange(6), predicted] = 0.8
    metrics = classification_metrics(labels, probabilities, 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # precision: class0 2/2, class1 1/2, class2 1/2 -> 2/3; recall: 2/3, 1/2, 1 -> 13/18
    assert metrics["precision_macro"] == pytest.approx(2 / 3)
    assert metrics["recall_macro"] == pytest.approx(13 / 18)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert metrics["f1_macro"] == pytest.approx(np.mean(f1))
    expected_loss = -(4 * np.log(0.8) + 2 * np.log(0.1)) / 6
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)


def test_wrong_probability_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"probabilities must be \(2, 3\); got \(2, 2\)"):
        classification_metrics(np.array([0, 1]), np.ones((2, 2)) / 2, 3)


def test_confusion_csv_uses_class_names(tmp_path: Path) -> None:
    path = tmp_path / "confusion.csv"
    write_confusion(path, np.array([0, 1]), np.array([1, 1]), ["cat", "dog"])
    assert path.read_bytes() == b"actual,predicted\ncat,dog\ndog,dog\n"
