"""Metrics, per-class scores and confusion data for a trained model.

In NumPy, with sklearn.metrics' definitions (`zero_division=0`: a class never predicted, or
never present, scores 0), which tests/unit/evaluation checks them against: importing
sklearn.metrics (and SciPy) took 2.2 s of the 6.5 s evaluate stage of numpy_dnn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab.core.files import write_csv
from nnlab.models.divergence import cross_entropy


def classification_metrics(
    labels: NDArray[np.int64], probabilities: NDArray[np.floating], n_classes: int
) -> dict[str, float]:
    """Accuracy, log loss and macro precision/recall/F1 of class probabilities (N, C)."""
    if probabilities.shape != (labels.shape[0], n_classes):
        raise ValueError(
            f"probabilities must be ({labels.shape[0]}, {n_classes}); "
            f"got {probabilities.shape}"
        )
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, _ = _scores(labels, predicted, n_classes)
    return {
        "accuracy": float(np.mean(labels == predicted)),
        # the loss training reports for the same weights (history.csv's val_loss)
        "loss": cross_entropy(probabilities, labels),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
        "f1_macro": float(np.mean(f1)),
    }


def _scores(
    labels: NDArray[np.int64], predicted: NDArray[np.int64], n_classes: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Per class: precision, recall, F1 and support (0 where a ratio has nothing below)."""
    counts = confusion_counts(labels, predicted, n_classes)
    hits = np.diag(counts).astype(np.float64)
    support, chosen = counts.sum(axis=1), counts.sum(axis=0)

    def ratio(top: NDArray[np.float64], bottom: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.divide(top, bottom, out=np.zeros(n_classes), where=bottom > 0)

    return ratio(hits, chosen), ratio(hits, support), ratio(2 * hits, support + chosen), support


def per_class_metrics(
    labels: NDArray[np.int64], predicted: NDArray[np.int64], classes: list[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every class, keyed by class name."""
    precision, recall, f1, support = _scores(labels, predicted, len(classes))
    return {
        name: {
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "support": int(support[index]),
        }
        for index, name in enumerate(classes)
    }


def confusion_counts(
    labels: NDArray[np.int64], predicted: NDArray[np.int64], n_classes: int
) -> NDArray[np.int64]:
    """(n_classes, n_classes) counts: rows are true classes, columns predicted ones."""
    if labels.size and (min(labels.min(), predicted.min()) < 0
                        or max(labels.max(), predicted.max()) >= n_classes):
        raise ValueError(f"labels and predictions must be classes 0 to {n_classes - 1}")
    pairs = labels.astype(np.int64) * n_classes + predicted.astype(np.int64)
    return np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def write_confusion(
    path: Path, labels: NDArray[np.int64], predicted: NDArray[np.int64], classes: list[str]
) -> None:
    """One row per sample, `actual,predicted` as class names: DVC's confusion template."""
    rows = (
        {"actual": classes[actual], "predicted": classes[guess]}
        for actual, guess in zip(labels.tolist(), predicted.tolist(), strict=True)
    )
    write_csv(path, ["actual", "predicted"], rows)
