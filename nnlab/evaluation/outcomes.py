"""Each model's per-image results, reports/<model>/predictions.csv: one row per validation
and test image, in the order of the split's arrays (the same for every model of a project),
so that two models, or one model in two experiments, can be compared image by image.

    split,index,label,predicted,confidence
    val,0,3,3,0.998712
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab.core.files import reading, write_text

OUTCOMES_FILE = "predictions.csv"
COLUMNS = ("split", "index", "label", "predicted", "confidence")
SPLITS = ("val", "test")


@dataclass(frozen=True)
class Outcomes:
    """One split's per-image results: true and predicted classes and the predicted class's
    probability, each of shape (N,)."""

    labels: NDArray[np.int64]
    predicted: NDArray[np.int64]
    confidence: NDArray[np.float64]

    @property
    def right(self) -> NDArray[np.bool_]:
        return self.labels == self.predicted


def write_outcomes(path: Path, results: dict[str, tuple[NDArray[np.int64],
                                                     NDArray[np.floating]]]) -> None:
    """`results` maps each split to (labels (N,), class probabilities (N, C))."""
    lines = [",".join(COLUMNS)]
    for split in SPLITS:
        labels, probabilities = results[split]
        predicted = probabilities.argmax(axis=1)
        confidence = probabilities[np.arange(len(labels)), predicted]
        lines += [f"{split},{index},{label},{guess},{score:.6f}" for index, (label, guess, score)
                  in enumerate(zip(labels.tolist(), predicted.tolist(), confidence.tolist(),
                                   strict=True))]
    write_text(path, "\n".join(lines) + "\n")


def read_outcomes(path: Path) -> dict[str, Outcomes]:
    """predictions.csv back as one Outcomes per split.

    Raises:
        FileNotFoundError: the file is missing (names `dvc repro`).
        DataFormatError: it is truncated, corrupt or out of order.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro` to create it")
    rows: dict[str, list[tuple[int, int, float]]] = {split: [] for split in SPLITS}
    with reading(path, "per-image predictions"), open(path, encoding="utf-8",
                                                      newline="") as handle:
        reader = csv.reader(handle)
        if tuple(next(reader)) != COLUMNS:
            raise ValueError(f"the header is not {','.join(COLUMNS)}")
        for split, index, label, predicted, confidence in reader:
            if int(index) != len(rows[split]):
                raise ValueError(f"{split} row {index} is out of order")
            rows[split].append((int(label), int(predicted), float(confidence)))
    return {split: Outcomes(np.array([row[0] for row in found], dtype=np.int64),
                            np.array([row[1] for row in found], dtype=np.int64),
                            np.array([row[2] for row in found], dtype=np.float64))
            for split, found in rows.items()}


def same_images(first: Outcomes, second: Outcomes) -> bool:
    """Whether two models' results are on the same images in the same order (as far as the
    labels show): the condition of a paired test."""
    return first.labels.shape == second.labels.shape and bool(
        np.array_equal(first.labels, second.labels))
