"""The split stage: a stratified, seeded validation set out of the training part. It reads
only the data contract, so a change to a dataset source never reruns it."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.contract import load_classes, load_split, save_split, stratified_split
from nnlab.core.layout import Layout
from nnlab.data.section import DataParams

# Fewer training images than this in a class, and a model cannot learn it: refuse the split.
MIN_TRAIN_PER_CLASS = 5


def check_training_counts(labels: NDArray[np.int64], classes: list[str],
                          val_fraction: float) -> None:
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < MIN_TRAIN_PER_CLASS:
        poorest = int(counts.argmin())
        raise ValueError(
            f"data.val_fraction={val_fraction:g} leaves {counts[poorest]} training image(s) "
            f"of class {classes[poorest]!r} (at least {MIN_TRAIN_PER_CLASS} per class are "
            "needed); lower data.val_fraction or data.test_fraction, or add images"
        )


def split(data: DataParams, seed: int, layout: Layout) -> dict[str, int]:
    """Take a stratified, seeded `data.val_fraction` validation set out of the training part."""
    images, labels = load_split(layout.prepared, "train")
    classes = load_classes(layout.prepared)
    kept, held = stratified_split(labels, data.val_fraction, seed, classes,
                                  "data.val_fraction")
    check_training_counts(labels[kept], classes, data.val_fraction)
    # Gathered from the memory-mapped images chunk by chunk, straight into the files.
    save_split(layout.split, "train", images, labels, rows=kept)
    save_split(layout.split, "val", images, labels, rows=held)
    return {"train": int(kept.shape[0]), "val": int(held.shape[0])}
