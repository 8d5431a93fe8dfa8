"""A Keras model at inference speed: its inference layers only, through Keras's compiled
predict function, on batches padded to a few fixed sizes.

`model.predict()` builds a data pipeline and callbacks on every call: about 45 ms for one 8x8
digit through the cnn, where the model computes in well under a millisecond. `predict_on_batch`
runs the same compiled function (a `tf.function` on TensorFlow, `jax.jit` on JAX) without
that set-up: 0.8 ms. Its probabilities are `predict()`'s (measured: equal, 0.0 difference).

Padding each batch to the next power of two (at most EVAL_BATCH) gives the compiled function
a handful of shapes, traced once each, whatever sizes the requests come in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.models.keras.backend import keras
from nnlab.models.keras.inputs import EVAL_BATCH

# Identity at inference, and not exportable: RandomTranslation's traced graph keeps its
# random ops (tf2onnx: "StatelessRandomUniformV2 is not supported").
TRAINING_ONLY = (keras.layers.Dropout, keras.layers.RandomTranslation, keras.layers.RandomFlip,
                 keras.layers.RandomRotation, keras.layers.RandomZoom)


def _layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Sequential):
            yield from _layers(layer)
        elif not isinstance(layer, TRAINING_ONLY):
            yield layer


def inference_model(model: keras.Sequential) -> keras.Sequential:
    """The same layers and weights (shared, not copied), flattened into one Sequential
    without the layers that act in training only. Takes what `model` takes: (N, H, W, C)
    pixels 0..255."""
    return keras.Sequential([keras.Input(shape=model.input_shape[1:]), *_layers(model)],
                            name=f"{model.name}_inference")


def bucket(rows: int) -> int:
    """The padded batch size: the next power of two, at most EVAL_BATCH."""
    return min(EVAL_BATCH, 1 << max(rows - 1, 0).bit_length())


class Predictor:
    """`predictor(images)`: a model's outputs for uint8 (N, H, W, C) images, as float32
    (N, outputs), in batches of at most EVAL_BATCH.

    With `xla` (a served model) on TensorFlow, the inference model is one `tf.function`
    compiled by XLA, called directly: 0.42 ms for one digit through the cnn, against 0.71 ms
    for `predict_on_batch` (its probabilities differ by 4e-7). Call it from one thread at a
    time (nnlab/handoff/batching.py does).
    """

    def __init__(self, model: keras.Sequential, xla: bool = False) -> None:
        self.model = inference_model(model)
        self.input_shape = tuple(int(size) for size in self.model.input_shape[1:])
        self.outputs = int(self.model.output_shape[-1])
        self._call: Callable[[np.ndarray], Any] = self.model.predict_on_batch
        if xla and keras.backend.backend() == "tensorflow":
            from nnlab.models.keras.backend import tf

            inference = self.model
            compiled = tf.function(lambda batch: inference(batch, training=False),
                                   jit_compile=True)
            self._call = lambda batch: compiled(batch).numpy()

    def __call__(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        out = np.empty((len(images), self.outputs), np.float32)
        for start in range(0, len(images), EVAL_BATCH):
            part = np.asarray(images[start:start + EVAL_BATCH], np.float32)  # (n, H, W, C)
            rows = len(part)
            if bucket(rows) > rows:
                part = np.concatenate([part, np.zeros((bucket(rows) - rows, *part.shape[1:]),
                                                      np.float32)])
            out[start:start + rows] = np.asarray(self._call(part))[:rows]
        return out

