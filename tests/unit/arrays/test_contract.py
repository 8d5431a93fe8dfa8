"""The data contract: uint8 images (N, H, W, C), int64 labels, stratified splits, read and
written without pickles, and memory checked before it is allocated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnlab.arrays.contract import (
    check_contract,
    check_memory,
    load_classes,
    load_split,
    save_classes,
    save_split,
    stratified_split,
)
from nnlab.core.errors import DataFormatError
from tests.support.helpers import make_images


def test_stratified_split_keeps_class_shares_and_is_seeded() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 20, 100]).astype(np.int64)
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert np.bincount(labels[held]).tolist() == [10, 6, 4, 20]
    assert np.intersect1d(kept, held).size == 0 and kept.size + held.size == labels.size
    again, _ = stratified_split(labels, 0.2, seed=3)
    other, _ = stratified_split(labels, 0.2, seed=4)
    assert np.array_equal(kept, again) and not np.array_equal(kept, other)


def test_stratified_split_too_small_class_is_a_clear_error() -> None:
    labels = np.array([0, 0, 0, 1], dtype=np.int64)
    with pytest.raises(ValueError, match="class 'owl' has a single image"):
        stratified_split(labels, 0.5, seed=0, classes=["cat", "owl"])
    labels = np.array([0, 0, 0, 0, 1, 1], dtype=np.int64)  # 10%: one image for two classes
    with pytest.raises(ValueError) as error:
        stratified_split(labels, 0.1, seed=0)
    assert str(error.value) == (
        "the held-out fraction=0.1 holds out 1 of 6 images in 2 classes, and a stratified "
        "split needs at least one image of every class on each side: set the held-out "
        "fraction to 0.334 or more (2 images, one a class), or have at least 20 images")
    # The probe's image folder: 150 classes of 3 images, 20% for the test set.
    labels = np.repeat(np.arange(150), 3)
    with pytest.raises(ValueError) as error:
        stratified_split(labels, 0.2, seed=0, param="data.test_fraction")
    assert str(error.value) == (
        "data.test_fraction=0.2 holds out 90 of 450 images in 150 classes, and a stratified "
        "split needs at least one image of every class on each side: set data.test_fraction "
        "to 0.334 or more (150 images, one a class), or have at least 750 images")
    kept, held = stratified_split(labels, 0.334, seed=0)  # the fraction it names works
    assert len(np.unique(labels[held])) == len(np.unique(labels[kept])) == 150
    with pytest.raises(ValueError, match="set data.val_fraction to 0.666 or less "):
        stratified_split(labels, 0.8, seed=0, param="data.val_fraction")
    kept, held = stratified_split(labels, 0.666, seed=0)
    assert len(np.unique(labels[held])) == len(np.unique(labels[kept])) == 150


def test_split_round_trip_loads_without_pickle(tmp_path: Path) -> None:
    images, labels = make_images(3, 2)
    save_split(tmp_path, "train", images, labels)
    save_classes(tmp_path, ["cat", "dog"])
    loaded_images, loaded_labels = load_split(tmp_path, "train")
    assert loaded_images.dtype == np.uint8 and np.array_equal(loaded_images, images)
    assert loaded_labels.dtype == np.int64 and np.array_equal(loaded_labels, labels)
    assert load_classes(tmp_path) == ["cat", "dog"]
    assert not list(tmp_path.glob("*.part"))


def test_missing_split_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"val_images\.npy: missing; run `dvc repro`"):
        load_split(tmp_path, "val")


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "train_images.npy", np.array([{"x": 1}], dtype=object))
    np.save(tmp_path / "train_labels.npy", np.zeros(1, dtype=np.int64))
    with pytest.raises(ValueError, match="allow_pickle|Python objects"):
        load_split(tmp_path, "train")[0][0]


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((2, 8, 8, 1), np.float64), np.zeros(2, np.int64), "must be uint8"),
        (np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.int64), "must be uint8 .N, H, W, C."),
        (np.zeros((2, 8, 8, 1), np.uint8), np.zeros(2, np.int32), "labels must be int64"),
        (np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 5], np.int64), r"in \[0, 3\)"),
    ],
)
def test_contract_violations(images: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_contract(images, labels, 3, "train")


def test_a_truncated_array_names_the_file_and_the_fix(tmp_path: Path) -> None:
    images, labels = make_images(5, 2)
    save_split(tmp_path, "train", images, labels)
    path = tmp_path / "train_images.npy"
    path.write_bytes(path.read_bytes()[:200])  # the header survives, the data does not
    with pytest.raises(DataFormatError) as error:
        load_split(tmp_path, "train")
    message = str(error.value)
    assert message.startswith(f"{path}: the NumPy array is truncated or corrupt (")
    assert message.endswith("restore it with `dvc checkout`, or rebuild it with `dvc repro`")
    assert "\n" not in message


def test_arrays_that_do_not_match_are_refused(tmp_path: Path) -> None:
    images, labels = make_images(5, 2)
    save_split(tmp_path, "train", images, labels[:-1])  # one label short
    with pytest.raises(DataFormatError, match=r"train_labels\.npy: expected 10 int64 labels"):
        load_split(tmp_path, "train")


def test_an_allocation_that_cannot_fit_is_refused_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psutil

    # The one fault here that cannot be caused for real: a machine with 8 GiB available.
    available = 8 * 2**30
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": available}))
    check_memory((1000, 256, 256, 3), "data.image_size=256", "lower data.image_size")
    with pytest.raises(ValueError) as error:
        check_memory((25_000, 1024, 1024, 3), "data.image_size=1024", "lower data.image_size")
    assert str(error.value) == (
        "data.image_size=1024: 25,000 images of 1024x1024x3 need about 146.5 GiB, more than "
        "half of the 8.0 GiB of memory available; lower data.image_size")


def test_a_split_written_by_rows_is_the_bytes_of_the_gathered_arrays(tmp_path: Path) -> None:
    """prepare and split write their parts row by row from the loaded (or memory-mapped)
    images, never holding a second copy: the files are exactly np.save's of the parts."""
    import io

    from nnlab.arrays import chunks as core_chunks
    from nnlab.arrays.contract import save_split

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 50).astype(np.int64)
    rows = rng.permutation(50)[:37]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core_chunks, "WORKING_MEMORY", 100)  # two images a chunk: many chunks
        save_split(tmp_path, "train", images, labels, rows=rows)
    for name, array in (("images", images[rows]), ("labels", labels[rows])):
        expected = io.BytesIO()
        np.save(expected, array, allow_pickle=False)
        assert (tmp_path / f"train_{name}.npy").read_bytes() == expected.getvalue(), name
