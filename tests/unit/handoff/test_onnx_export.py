"""The ONNX graphs of numpy_dnn, numpy_cnn and logreg against the models themselves: each
layer kind, padding, stride, batch norm, grey and RGB, 2 classes and 10, and the `deep`
preset, run in onnxruntime on uint8 images (the Keras models: tests/e2e/test_export_e2e.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest

from nnlab.handoff.onnx_copy import to_onnx
from nnlab.handoff.onnx_export.graph import INPUT, OUTPUT
from nnlab.models.logreg.classifier import LogregClassifier
from nnlab.models.logreg.section import LogregParams
from nnlab.models.numpy.classifier import NumpyCnnClassifier, NumpyDnnClassifier
from nnlab.models.numpy.conv import Conv2D, MaxPool2D
from nnlab.models.numpy.convnet import build_cnn
from nnlab.models.numpy.layers import BatchNorm
from nnlab.models.numpy.network import Network, build_mlp


def _run(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    assert [value.name for value in session.get_inputs()] == [INPUT]
    assert session.get_inputs()[0].type == "tensor(uint8)"
    return np.asarray(session.run([OUTPUT], {INPUT: images})[0])


def _trained_like(network: Network, rng: np.random.Generator) -> Network:
    """Random biases, batch-norm scales and running statistics, so that every node counts."""
    for layer in network.layers:
        for name, array in (*layer.params.items(), *layer.state.items()):
            if name in ("b", "beta", "running_mean"):
                array[...] = rng.normal(0, 0.3, array.shape)
            elif name in ("gamma", "running_var"):
                array[...] = rng.uniform(0.5, 1.5, array.shape)
    return network


def _classifier(cls: Any, network: Network) -> Any:
    return cls.restored(model=network, device="cpu", image_shape=None)


@pytest.mark.parametrize(("activation", "batch_norm", "n_classes"), [
    ("relu", False, 10), ("leaky_relu", True, 10), ("tanh", False, 2), ("sigmoid", True, 3)])
def test_numpy_dnn_graph_gives_its_probabilities(activation: str, batch_norm: bool,
                                                 n_classes: int) -> None:
    rng = np.random.default_rng(0)
    shape = (8, 8, 1)
    network = _trained_like(build_mlp(64, [32, 16], n_classes, activation, "he", rng,
                                      dropout=0.3, batch_norm=batch_norm), rng)
    classifier = _classifier(NumpyDnnClassifier, network)
    images = rng.integers(0, 256, (50, *shape), dtype=np.uint8)
    exported = _run(to_onnx(classifier, shape, n_classes), images)
    assert exported.shape == (50, n_classes)
    np.testing.assert_allclose(exported, classifier.predict_proba(images), atol=1e-5)


@pytest.mark.parametrize(("shape", "blocks", "batch_norm", "n_classes", "preset"), [
    ((8, 8, 1), [(4, 1), (8, 2)], False, 10, None),
    ((9, 7, 3), [(4, 2)], True, 2, None),  # odd sizes: "same" pads the odd pixel after
    ((28, 28, 1), [], False, 10, "deep"),
])
def test_numpy_cnn_graph_gives_its_probabilities(shape: tuple[int, int, int],
                                                 blocks: list[tuple[int, int]],
                                                 batch_norm: bool, n_classes: int,
                                                 preset: str | None) -> None:
    rng = np.random.default_rng(1)
    network = _trained_like(build_cnn(shape, blocks, n_classes, "he", rng, block_dropout=0.2,
                                      dense_units=[16], batch_norm=batch_norm,
                                      preset=preset), rng)
    classifier = _classifier(NumpyCnnClassifier, network)
    images = rng.integers(0, 256, (20, *shape), dtype=np.uint8)
    np.testing.assert_allclose(_run(to_onnx(classifier, shape, n_classes), images),
                               classifier.predict_proba(images), atol=1e-5)


def test_strides_and_valid_padding_map_to_explicit_pads() -> None:
    rng = np.random.default_rng(2)
    shape = (11, 11, 2)
    layers = [Conv2D(rng.normal(0, 0.2, (3, 3, 2, 4)).astype(np.float32),
                     rng.normal(0, 0.2, 4).astype(np.float32), stride=2, padding="same"),
              Conv2D(rng.normal(0, 0.2, (3, 3, 4, 4)).astype(np.float32), None,
                     padding="valid"),
              MaxPool2D(2, padding="same")]
    reference = build_cnn(shape, [(4, 1)], 3, "he", rng)
    flatten_on = [i for i, layer in enumerate(reference.layers)
                  if type(layer).__name__ == "Flatten"][0]
    dense = reference.layers[flatten_on + 1]
    dense.params["W"] = rng.normal(0, 0.2, (2 * 2 * 4, 3)).astype(np.float32)
    network = Network([*layers, *reference.layers[flatten_on:]], reference.architecture)
    assert not any(isinstance(layer, BatchNorm) for layer in network.layers)
    classifier = _classifier(NumpyCnnClassifier, network)
    images = rng.integers(0, 256, (10, *shape), dtype=np.uint8)
    np.testing.assert_allclose(_run(to_onnx(classifier, shape, 3), images),
                               classifier.predict_proba(images), atol=1e-5)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_graph_gives_its_probabilities(n_classes: int) -> None:
    rng = np.random.default_rng(3)
    shape = (6, 6, 3)
    images = rng.integers(0, 256, (80, *shape), dtype=np.uint8)
    labels = np.arange(80) % n_classes
    classifier = LogregClassifier(LogregParams(C=1.0, max_iter=200, seed=None), seed=0)
    classifier.fit((images, labels), (images[:10], labels[:10]), n_classes)
    np.testing.assert_allclose(_run(to_onnx(classifier, shape, n_classes), images),
                               classifier.predict_proba(images), atol=1e-5)
