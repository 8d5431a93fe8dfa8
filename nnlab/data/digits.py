"""scikit-learn's bundled 8x8 digits: 1,797 images, 10 classes, no download needed."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnlab.arrays.contract import RawDataset

if TYPE_CHECKING:
    from nnlab.data.section import DataParams

MAX_PIXEL = 16  # digits pixels are counts in 0..16


def download(raw_dir: Path, data: DataParams) -> None:
    """Nothing to fetch: record where the data comes from, so the stage has an output."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "dataset": "digits",
        "source": "sklearn.datasets.load_digits (bundled with scikit-learn)",
        "scikit_learn_version": version("scikit-learn"),
    }
    (raw_dir / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def load(raw_dir: Path, data: DataParams) -> RawDataset:
    from sklearn.datasets import load_digits  # late: download needs no sklearn import

    bunch = load_digits()
    # (N, 8, 8) float counts 0..16 -> uint8 0..255, with a channel axis: (N, 8, 8, 1).
    images = np.rint(bunch.images * (255 / MAX_PIXEL)).astype(np.uint8)[..., np.newaxis]
    labels = bunch.target.astype(np.int64)
    classes = [str(name) for name in bunch.target_names]
    return RawDataset(images=images, labels=labels, classes=classes)
