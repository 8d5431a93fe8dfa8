"""CIFAR-10, binary version: 50,000 + 10,000 colour images of 32x32, 10 classes.

The "python version" of CIFAR-10 is a pickle, and unpickling a download can run arbitrary
code, so this reads the binary version: each record is 1 label byte followed by 3,072 pixel
bytes (1,024 red, then green, then blue, each row-major), parsed with `np.fromfile`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.contract import RawDataset
from nnlab.core.errors import DataFormatError
from nnlab.data import fetch
from nnlab.data.fetch import RemoteFile

if TYPE_CHECKING:
    from nnlab.data.section import DataParams

ARCHIVE = RemoteFile(
    "cifar-10-binary.tar.gz",
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    170_052_171,
)
MIRRORS = ("https://www.cs.toronto.edu/~kriz",)
FOLDER = "cifar-10-batches-bin"  # the archive's top-level folder
TRAIN_FILES = tuple(f"data_batch_{index}.bin" for index in range(1, 6))
TEST_FILES = ("test_batch.bin",)
# As published in batches.meta.txt and on https://www.cs.toronto.edu/~kriz/cifar.html
CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
SIDE, CHANNELS = 32, 3
RECORD = 1 + SIDE * SIDE * CHANNELS


def download(raw_dir: Path, data: DataParams) -> None:
    (archive,) = fetch.fetch([ARCHIVE], fetch.downloads_dir("cifar10"), MIRRORS, data.source)
    fetch.safe_extract(archive, raw_dir)
    if not (raw_dir / FOLDER).is_dir():
        raise DataFormatError(f"{archive}: has no {FOLDER}/ folder; is it the binary version?")


def load(raw_dir: Path, data: DataParams) -> RawDataset:
    images, labels = read_batches([raw_dir / FOLDER / name for name in TRAIN_FILES])
    test_images, test_labels = read_batches([raw_dir / FOLDER / name for name in TEST_FILES])
    return RawDataset(
        images=images, labels=labels, classes=list(CLASSES),
        test_images=test_images, test_labels=test_labels,
    )


def read_batches(paths: list[Path]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Images (N, 32, 32, 3) and labels (N,) from binary batch files, in file order.

    The output is allocated once and filled file by file, so peak memory is the dataset
    plus one batch file.
    """
    counts = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; run `dvc repro download`")
        size = path.stat().st_size
        if size == 0 or size % RECORD:
            raise DataFormatError(
                f"{path}: {size:,} bytes is not a whole number of {RECORD:,}-byte records; "
                "the file is truncated or not CIFAR-10 binary"
            )
        counts.append(size // RECORD)
    images = np.empty((sum(counts), SIDE, SIDE, CHANNELS), dtype=np.uint8)
    labels = np.empty(sum(counts), dtype=np.int64)
    start = 0
    for path, count in zip(paths, counts, strict=True):
        records = np.fromfile(path, dtype=np.uint8).reshape(count, RECORD)
        batch_labels = records[:, 0]
        if batch_labels.max() >= len(CLASSES):
            raise DataFormatError(
                f"{path}: label {batch_labels.max()} is out of range for {len(CLASSES)} classes"
            )
        labels[start : start + count] = batch_labels
        # CHW planes -> HWC pixels
        images[start : start + count] = records[:, 1:].reshape(
            count, CHANNELS, SIDE, SIDE
        ).transpose(0, 2, 3, 1)
        start += count
    return images, labels


def to_records(images: NDArray[np.uint8], labels: NDArray[np.integer]) -> bytes:
    """CIFAR-10 binary records of HWC `images` (the inverse of `read_batches`, for tests)."""
    planes = images.transpose(0, 3, 1, 2).reshape(images.shape[0], -1)
    return np.column_stack([labels.astype(np.uint8), planes]).astype(np.uint8).tobytes()
