"""The data contract: uint8 images (N, H, W, C) and int64 labels (N,) in .npy files.

Class names live in `classes.json` next to the arrays. Arrays are loaded memory-mapped and
with `allow_pickle=False`, so neither size nor a hostile file can hurt the reader.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.chunks import chunk_rows, chunks
from nnlab.core.errors import DataFormatError
from nnlab.core.files import RESTORE, atomic_path, load_npy, reading
from nnlab.core.layout import CLASSES_FILE

Split = tuple[NDArray[np.uint8], NDArray[np.int64]]  # (images (N, H, W, C), labels (N,))


@dataclass(frozen=True)
class RawDataset:
    """A dataset in the data contract, before the test hold-out."""

    images: NDArray[np.uint8]  # (N, H, W, C)
    labels: NDArray[np.int64]  # (N,)
    classes: list[str]
    test_images: NDArray[np.uint8] | None = None  # official test split, if the source has one
    test_labels: NDArray[np.int64] | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable inputs, one line each
    left_out: list[str] = field(default_factory=list)  # classes with no readable input


def check_contract(images: NDArray, labels: NDArray, n_classes: int, name: str) -> None:
    """Raise ValueError if arrays break the data contract."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"{name}: images must be uint8 (N, H, W, C); got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"{name}: labels must be int64 ({images.shape[0]},); "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name}: labels must be in [0, {n_classes}); got {labels.max()}")


def check_memory(shape: tuple[int, ...], cause: str, fix: str) -> None:
    """Refuse, before allocating, uint8 arrays of `shape` that cannot fit: prepare holds the
    images once, and asks for twice that to leave room for the reader and the page cache."""
    import psutil

    need = 2 * math.prod(shape)
    available = psutil.virtual_memory().available
    if need > available // 2:
        raise ValueError(
            f"{cause}: {shape[0]:,} images of {'x'.join(map(str, shape[1:]))} need about "
            f"{need / 2**30:.1f} GiB, more than half of the {available / 2**30:.1f} GiB of "
            f"memory available; {fix}"
        )


def _save_npy(path: Path, array: NDArray, rows: NDArray[np.intp] | None = None) -> None:
    """np.save of `array`, or of `array[rows]` gathered chunk by chunk and written as it goes
    (the same bytes as np.save's, without a second copy of the rows in memory)."""
    # Write next to the target, then rename: a crash never leaves a valid-looking half file.
    with atomic_path(path) as part, open(part, "wb") as handle:
        if rows is None:
            np.save(handle, array, allow_pickle=False)
            return
        np.lib.format.write_array_header_1_0(handle, {
            "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
            "shape": (len(rows), *array.shape[1:])})
        step = chunk_rows(int(np.prod(array.shape[1:])) * array.itemsize)
        for part_rows in chunks(len(rows), step):
            handle.write(np.ascontiguousarray(array[rows[part_rows]]).tobytes())


def save_split(
    directory: Path, name: str, images: NDArray[np.uint8], labels: NDArray[np.int64],
    rows: NDArray[np.intp] | None = None,
) -> None:
    """Write `<name>_images.npy` and `<name>_labels.npy` under `directory`: the arrays, or
    their `rows` (written chunk by chunk)."""
    directory.mkdir(parents=True, exist_ok=True)
    _save_npy(directory / f"{name}_images.npy", images, rows)
    _save_npy(directory / f"{name}_labels.npy", labels if rows is None else labels[rows])


def load_split(directory: Path, name: str) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Load a split written by `save_split`, images memory-mapped."""
    paths = [directory / f"{name}_images.npy", directory / f"{name}_labels.npy"]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; run `dvc repro` to create it")
    images = load_npy(paths[0], mmap=True)
    labels = load_npy(paths[1])
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataFormatError(f"{paths[0]}: expected uint8 images (N, H, W, C), got "
                              f"{images.dtype} {images.shape}; {RESTORE}")
    if labels.dtype != np.int64 or labels.shape != images.shape[:1]:
        raise DataFormatError(f"{paths[1]}: expected {images.shape[0]} int64 labels, got "
                              f"{labels.dtype} {labels.shape}; {RESTORE}")
    return images, labels


def save_classes(directory: Path, classes: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CLASSES_FILE).write_text(json.dumps(classes, indent=2) + "\n", encoding="utf-8")


def load_classes(directory: Path) -> list[str]:
    path = directory / CLASSES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro` to create it")
    with reading(path, "the class list"):
        classes = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise ValueError(f"{path}: must be a JSON list of class names")
    return classes


def stratified_split(
    labels: NDArray[np.int64], fraction: float, seed: int, classes: list[str] | None = None,
    param: str = "the held-out fraction",
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices (kept, held_out) with `fraction` of every class held out, sorted. A class
    with a single sample is refused by its name (from `classes`); a fraction that leaves
    fewer images than classes on either side, by `param` (its params.yaml key) and the
    smallest fraction, or the smallest number of images, that works.

    Works on indices only, so callers can slice memory-mapped arrays without copying all.
    """
    from sklearn.model_selection import train_test_split  # late: sklearn takes ~10 s to import

    counts = np.bincount(labels, minlength=len(classes) if classes else 0)
    alone = [index for index, count in enumerate(counts) if count == 1]
    if alone:
        names = ", ".join(repr(classes[i]) if classes else str(i) for i in alone[:5])
        raise ValueError(
            f"class {names} has a single image: a stratified split puts at least one image of "
            "every class on each side, and training needs 5 more (about 10 images per class "
            "in all); add images to it, or remove its folder")

    total, n_classes = int(labels.shape[0]), int(np.count_nonzero(counts))
    held_count = math.ceil(fraction * total)  # as scikit-learn rounds test_size
    if min(held_count, total - held_count) < n_classes:
        # Every class has 2 images or more (above), so some fraction works: the nearest.
        if held_count < n_classes:
            fix = (f"set {param} to {math.ceil(1000 * n_classes / total) / 1000:g} or more "
                   f"({n_classes:,} images, one a class), or have at least "
                   f"{math.ceil(n_classes / fraction):,} images")
        else:
            fix = (f"set {param} to {math.floor(1000 * (total - n_classes) / total) / 1000:g} "
                   f"or less ({n_classes:,} images kept, one a class), or have at least "
                   f"{math.ceil(n_classes / (1 - fraction)):,} images")
        raise ValueError(
            f"{param}={fraction:g} holds out {held_count:,} of {total:,} images in "
            f"{n_classes:,} classes, and a stratified split needs at least one image of every "
            f"class on each side: {fix}")
    indices = np.arange(labels.shape[0])
    try:
        kept, held = train_test_split(
            indices, test_size=fraction, stratify=labels, random_state=seed
        )
    except ValueError as error:
        raise ValueError(
            f"cannot hold out a stratified {fraction:.0%} of {labels.shape[0]} samples: {error}"
        ) from None
    return np.sort(kept), np.sort(held)


def to_float_images(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """uint8 images (N, H, W, C) as float32 in [0, 1], same shape (for convnets)."""
    return np.asarray(images, dtype=np.float32) / np.float32(255)


def to_features(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Flatten uint8 images (N, H, W, C) to float32 features (N, H*W*C) in [0, 1]."""
    return to_float_images(images).reshape(images.shape[0], -1)
