from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnlab.evaluation import plots
from nnlab.evaluation.metrics import (
    classification_metrics,
    confusion_counts,
    per_class_metrics,
    write_confusion,
)
from tests.support.helpers import make_images


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


@pytest.mark.parametrize("seed", range(40))
def test_the_metrics_are_sklearns_bit_for_bit(seed: int) -> None:
    """Random labels and predictions, with classes never present or never predicted."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    n_classes, size = int(rng.integers(2, 12)), int(rng.integers(1, 60))
    labels = rng.integers(0, n_classes - seed % 2, size)
    probabilities = rng.random((size, n_classes))
    probabilities[:, seed % n_classes] = 0  # a class never predicted
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    metrics = classification_metrics(labels, probabilities, n_classes)
    average = precision_recall_fscore_support(labels, predicted, labels=range(n_classes),
                                              average="macro", zero_division=0)
    assert metrics["accuracy"] == accuracy_score(labels, predicted)
    assert [metrics[f"{name}_macro"] for name in ("precision", "recall", "f1")] == \
        list(average[:3])
    classes = [str(index) for index in range(n_classes)]
    each = precision_recall_fscore_support(labels, predicted, labels=range(n_classes),
                                           zero_division=0)
    scores = per_class_metrics(labels, predicted, classes)
    for key, column in zip(("precision", "recall", "f1", "support"), each, strict=True):
        assert [scores[name][key] for name in classes] == column.tolist(), key
    assert np.array_equal(confusion_counts(labels, predicted, n_classes),
                          confusion_matrix(labels, predicted, labels=range(n_classes)))


def test_a_label_outside_the_classes_is_rejected() -> None:
    with pytest.raises(ValueError, match="labels and predictions must be classes 0 to 2"):
        confusion_counts(np.array([0, 3]), np.array([0, 1]), 3)


def test_wrong_probability_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"probabilities must be \(2, 3\); got \(2, 2\)"):
        classification_metrics(np.array([0, 1]), np.ones((2, 2)) / 2, 3)


def test_confusion_csv_uses_class_names(tmp_path: Path) -> None:
    path = tmp_path / "confusion.csv"
    write_confusion(path, np.array([0, 1]), np.array([1, 1]), ["cat", "dog"])
    assert path.read_bytes() == b"actual,predicted\ncat,dog\ndog,dog\n"


def test_per_class_scores_and_counts_on_the_hand_checked_case() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2], dtype=np.int64)
    predicted = np.array([0, 0, 1, 1, 2, 2], dtype=np.int64)
    scores = per_class_metrics(labels, predicted, ["cat", "dog", "owl"])
    assert list(scores) == ["cat", "dog", "owl"]
    assert scores["cat"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert scores["dog"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                           "support": 2})
    assert scores["owl"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                                           "support": 1})
    assert confusion_counts(labels, predicted, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def _looks_like_a_figure(path: Path, min_size: tuple[int, int], ink: float = 0.05) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= min_size[0]
        assert image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    # Not an empty canvas: a real plot has plenty of non-white pixels.
    assert (pixels < 250).mean() > ink
    assert not list(path.parent.glob("*.part"))


def test_every_plot_is_a_real_png(tmp_path: Path) -> None:
    images, labels = make_images(5, 3, shape=(8, 8, 3))
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=labels.shape[0])
    classes = ["cat", "dog", "owl"]
    predicted = probabilities.argmax(axis=1)
    plots.confusion_matrix_png(
        tmp_path / "confusion.png", confusion_counts(labels, predicted, 3), classes, "t"
    )
    history = [{"epoch": epoch, "loss": 1 / epoch, "accuracy": 1 - 1 / (epoch + 1),
                "val_loss": 1.2 / epoch, "val_accuracy": 0.9 - 1 / (epoch + 2)}
               for epoch in range(1, 6)]
    plots.learning_curves_png(tmp_path / "curves.png", history, "t")
    plots.learning_curves_png(tmp_path / "one_fit.png", history[:1], "t")
    plots.misclassified_png(tmp_path / "wrong.png", images, labels, probabilities, classes, "t")
    plots.decision_boundary_png(
        tmp_path / "boundary.png", lambda points: np.column_stack(
            [points[:, 0] > 0, points[:, 0] <= 0]).astype(float),
        rng.uniform(-4, 4, (50, 2)), rng.integers(0, 2, 50), ["red", "blue"], 5.0, "t",
    )
    plots.summary_png(tmp_path / "summary.png", [
        {"model": "numpy_dnn", "val_accuracy": 0.98, "test_accuracy": 0.97},
        {"model": "logreg", "val_accuracy": 0.95, "test_accuracy": 0.96},
    ])
    for name in ("confusion", "curves", "one_fit", "wrong", "boundary", "summary"):
        _looks_like_a_figure(tmp_path / f"{name}.png", (400, 300))


def test_misclassified_grid_with_no_mistakes_says_so(tmp_path: Path) -> None:
    images, labels = make_images(2, 2)
    probabilities = np.eye(2)[labels]
    plots.misclassified_png(tmp_path / "wrong.png", images, labels, probabilities, ["a", "b"], "t")
    _looks_like_a_figure(tmp_path / "wrong.png", (400, 100), ink=0.002)  # just the message
