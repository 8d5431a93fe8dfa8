"""Metrics, per-class scores and confusion data for a trained model (from sklearn.metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from nnlab.core.files import write_csv
from nnlab.core.loss import cross_entropy


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
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=range(n_classes), average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        # the loss training reports for the same weights (history.csv's val_loss)
        "loss": cross_entropy(probabilities, labels),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
    }


def per_class_metrics(
    labels: NDArray[np.int64], predicted: NDArray[np.int64], classes: list[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every class, keyed by class name."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(len(classes)), average=None, zero_division=0
    )
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
    return confusion_matrix(labels, predicted, labels=range(n_classes)).astype(np.int64)


def write_confusion(
    path: Path, labels: NDArray[np.int64], predicted: NDArray[np.int64], classes: list[str]
) -> None:
    """One row per sample, `actual,predicted` as class names: DVC's confusion template."""
    rows = (
        {"actual": classes[actual], "predicted": classes[guess]}
        for actual, guess in zip(labels.tolist(), predicted.tolist(), strict=True)
    )
    write_csv(path, ["actual", "predicted"], rows)
