"""The download and prepare stages: fetch and verify raw files; convert them to the data
contract with a fixed test hold-out. (split: nnlab/data/split.py, which loads no source.)

A source is a module or an object with two functions:
- ``download(raw_dir, data)``: put verified raw files under ``raw_dir`` (DVC's `data/raw`);
- ``load(raw_dir, data)``: return a RawDataset built from those files.
Sources with an official test split fill ``RawDataset.test_images``; the others get a fixed
stratified hold-out in `prepare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from nnlab.arrays.contract import (
    RawDataset,
    check_contract,
    save_classes,
    save_split,
    stratified_split,
)
from nnlab.core.files import write_text
from nnlab.core.layout import SKIPPED_FILE, Layout
from nnlab.data import cifar10, digits, idx, image_folder, planar
from nnlab.data.section import DataParams


class Source(Protocol):
    def download(self, raw_dir: Path, data: DataParams) -> None: ...

    def load(self, raw_dir: Path, data: DataParams) -> RawDataset: ...


# `data.dataset` -> its source (the keys are params.py's DATASETS; a test checks it).
# Download and prepare import every source, so that their dvc.yaml deps are exactly the code
# they load: a change to any source reruns them, and nothing else.
SOURCES: dict[str, Source] = {
    "digits": digits,
    "mnist": idx.MNIST,
    "fashion_mnist": idx.FASHION_MNIST,
    "cifar10": cifar10,
    "image_folder": image_folder,
    "planar": planar,
}


def get_dataset(name: str) -> Source:
    """The source for `data.dataset`, or a ValueError listing the valid names."""
    if name not in SOURCES:
        raise ValueError(
            f"data.dataset={name!r}: unknown dataset; choose one of: {', '.join(SOURCES)}")
    return SOURCES[name]


# A fixed seed for the test hold-out: the test set must not move when `seed` changes,
# or test metrics of two experiments would not be comparable.
TEST_HOLDOUT_SEED = 20240101


def download(data: DataParams, layout: Layout) -> None:
    """Fetch and verify the raw files of `data.dataset` into data/raw."""
    get_dataset(data.dataset).download(layout.raw, data)


def prepare(data: DataParams, layout: Layout) -> dict[str, Any]:
    """Convert raw files to the data contract; hold out a fixed stratified test set if needed.

    Returns the number of train and test samples written, of unreadable files skipped, and
    the classes left out because none of their files was readable.
    """
    source = get_dataset(data.dataset)
    raw = source.load(layout.raw, data)
    n_classes = len(raw.classes)
    if raw.test_images is not None and raw.test_labels is not None:
        check_contract(raw.images, raw.labels, n_classes, "train")
        check_contract(raw.test_images, raw.test_labels, n_classes, "test")
        save_split(layout.prepared, "train", raw.images, raw.labels)
        save_split(layout.prepared, "test", raw.test_images, raw.test_labels)
        counts = (len(raw.labels), len(raw.test_labels))
    else:
        kept, held = stratified_split(raw.labels, data.test_fraction, TEST_HOLDOUT_SEED,
                                      raw.classes, "data.test_fraction")
        check_contract(raw.images, raw.labels, n_classes, "train")
        # Both parts written row by row from the loaded images: never a second copy of them.
        save_split(layout.prepared, "train", raw.images, raw.labels, rows=kept)
        save_split(layout.prepared, "test", raw.images, raw.labels, rows=held)
        counts = (len(kept), len(held))
    save_classes(layout.prepared, raw.classes)
    # Always written (empty when nothing was skipped), so the output set never changes.
    write_text(
        layout.prepared / SKIPPED_FILE,
        f"# {len(raw.skipped)} unreadable input(s) skipped\n"
        + "".join(f"{line}\n" for line in raw.skipped),
    )
    return {"train": counts[0], "test": counts[1], "skipped": len(raw.skipped),
            "left_out": raw.left_out}
