"""Prediction's memory does not grow with the number of images (issue 42): the NumPy models
and logreg predict in chunks sized by a memory budget (nnlab/arrays/chunks.py), so 2,048 images
cost no more than 256 do, beyond the images themselves. tracemalloc sees NumPy's buffers; a
ceiling on memory is deterministic, unlike a time."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nnlab.arrays import chunks as core_chunks
from nnlab.arrays.chunks import chunk_rows, chunks
from nnlab.models.base import FeatureClassifier, new_model
from nnlab.params import load_params
from tests.support.helpers import ROOT

SHAPE, CLASSES = (28, 28, 1), 10  # MNIST-shaped: numpy_cnn's columns are 451 kB an image


def _trained(name: str) -> FeatureClassifier:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, *SHAPE), dtype=np.uint8)
    labels = np.arange(100, dtype=np.int64) % CLASSES
    params = load_params(ROOT / "params.yaml").model_params(name)
    if "epochs" in type(params).model_fields:
        params = params.model_copy(update={"epochs": 1, "early_stopping_patience": None})
    model = new_model(name, params, 0)
    assert isinstance(model, FeatureClassifier)
    model.fit((images[:80], labels[:80]), (images[80:], labels[80:]), CLASSES)
    return model


def _peak(model: FeatureClassifier, images: np.ndarray) -> tuple[int, np.ndarray]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        probabilities = model.predict_proba(images)
        return tracemalloc.get_traced_memory()[1], probabilities
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["numpy_cnn", "numpy_dnn", "logreg"])
def test_predicting_8x_more_images_costs_no_more_than_the_images(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if name != "numpy_cnn":  # its chunks hold about 100 MNIST images at the real 64 MB
        # A 2 MB budget, so that 256 images fill a chunk (at 64 MB, numpy_dnn's and logreg's
        # chunks hold 10,000 MNIST images).
        monkeypatch.setattr(core_chunks, "WORKING_MEMORY", 2 << 20)
    model = _trained(name)
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (256, *SHAPE), dtype=np.uint8)
    large = rng.integers(0, 256, (2048, *SHAPE), dtype=np.uint8)
    model.predict_proba(small[:2])  # numba compiles, buffers for one image: not counted
    small_peak, _ = _peak(model, small)
    large_peak, probabilities = _peak(model, large)
    extra = large.nbytes - small.nbytes  # the images' own size, and their probabilities twice
    extra += 2 * (len(large) - len(small)) * CLASSES * 4
    assert large_peak - small_peak <= extra, (
        f"{name}: predicting 2,048 images peaked {large_peak / 1e6:.1f} MB, 256 images "
        f"{small_peak / 1e6:.1f} MB: {(large_peak - small_peak) / 1e6:.1f} MB more, above the "
        f"images' own {extra / 1e6:.1f} MB")
    assert probabilities.shape == (2048, CLASSES)


@pytest.mark.parametrize("name", ["numpy_cnn", "numpy_dnn"])
def test_predicting_in_chunks_gives_what_one_pass_gives(name: str) -> None:
    """Chunks change no result: each image's probabilities are those of one whole pass (to
    float32 rounding: BLAS may block a smaller GEMM differently)."""
    model = _trained(name)
    images = np.random.default_rng(2).integers(0, 256, (300, *SHAPE), dtype=np.uint8)
    whole = model._trained().predict_proba(model.inputs(images))
    rows = chunk_rows(model.bytes_per_image(SHAPE))
    assert rows < len(images) or name == "numpy_dnn"  # numpy_cnn really goes in chunks here
    parts = np.concatenate([model._trained().predict_proba(model.inputs(images[part]))
                            for part in chunks(len(images), 96)])
    np.testing.assert_allclose(model.predict_proba(images), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)


def test_chunks_cover_every_row_once() -> None:
    assert [(part.start, part.stop) for part in chunks(10, 4)] == [(0, 4), (4, 8), (8, 10)]
    assert list(chunks(0, 4)) == []
    assert chunk_rows(10 << 30) == 1 and chunk_rows(1, budget=100) == 100
