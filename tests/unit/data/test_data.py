"""The data stages' work: download, prepare and split the digits; the split's checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnlab.arrays.contract import load_classes, load_split
from nnlab.core.layout import Layout
from nnlab.data import ingest
from nnlab.data import split as data_split
from tests.support.helpers import project_params


def test_prepare_and_split_digits(tmp_path: Path) -> None:
    params = project_params({"data": {"val_fraction": 0.25}})
    layout = Layout(tmp_path)
    ingest.download(params.data, layout)
    counts = ingest.prepare(params.data, layout)
    assert counts == {"train": 1437, "test": 360, "skipped": 0, "left_out": []}
    test_images, test_labels = load_split(layout.prepared, "test")
    assert test_images.shape == (360, 8, 8, 1) and test_images.max() == 255
    assert np.bincount(test_labels).min() >= 35  # stratified: ~36 per digit
    split_counts = data_split.split(params.data, params.seed, layout)
    assert split_counts["val"] == 360 and split_counts["train"] == 1077
    assert load_classes(layout.prepared) == [str(digit) for digit in range(10)]

    # The test hold-out is fixed: changing `seed` moves the validation set, not the test set.
    reseeded = project_params({"seed": 7})
    other = Layout(tmp_path / "other")
    ingest.download(reseeded.data, other)
    ingest.prepare(reseeded.data, other)
    assert np.array_equal(load_split(other.prepared, "test")[1], test_labels)


def test_a_split_that_leaves_too_few_training_images_is_refused() -> None:
    labels = np.repeat(np.arange(3), [40, 40, 4]).astype(np.int64)
    with pytest.raises(ValueError) as error:
        data_split.check_training_counts(labels, ["cat", "dog", "bird"], 0.5)
    assert str(error.value) == (
        "data.val_fraction=0.5 leaves 4 training image(s) of class 'bird' (at least 5 per "
        "class are needed); lower data.val_fraction or data.test_fraction, or add images")
    data_split.check_training_counts(labels[:80], ["cat", "dog"], 0.5)  # enough: no error


