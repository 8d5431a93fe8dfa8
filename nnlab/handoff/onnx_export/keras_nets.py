"""keras_mlp and cnn as ONNX, through Keras's own exporter (tf2onnx on TensorFlow), on the
inference model (nnlab/models/keras/inference.py: the training-only layers' random ops do not
export), behind the uint8 `images` input."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from nnlab.handoff.onnx_export.graph import OPSET, with_image_input
from nnlab.models.keras.backend import keras
from nnlab.models.keras.inference import inference_model


def in_float32(model: keras.Sequential) -> keras.Sequential:
    """`model` computing in float32 throughout: itself, or for a mixed-precision model
    (bfloat16 or float16 layers) a copy of its inference layers with float32 policies and
    the same weights (mixed precision keeps them in float32). ONNX has no bfloat16 for most
    of the operators Keras's exporter writes (`B has inconsistent type tensor(bfloat16)`)."""
    inference = inference_model(model)
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in inference.layers):
        return model
    layers = [type(layer).from_config({**layer.get_config(), "dtype": "float32"})
              for layer in inference.layers]
    copy = keras.Sequential([keras.Input(shape=inference.input_shape[1:]), *layers],
                            name=f"{model.name}_float32")
    copy.set_weights(inference.get_weights())
    return copy


def to_onnx(model: keras.Sequential, n_classes: int) -> Any:
    """A probability model (`with_probabilities`, or MLflow's Keras model) as an
    onnx.ModelProto, in float32 (in_float32)."""
    inference = inference_model(in_float32(model))
    height, width, channels = (int(size) for size in inference.input_shape[1:])
    shape = (height, width, channels)
    inference(np.zeros((1, *shape), np.float32))  # the exporter wants a model called once
    with tempfile.TemporaryDirectory(prefix="nnlab-onnx-") as folder, _quiet_tf2onnx():
        path = Path(folder) / "model.onnx"
        inference.export(str(path), format="onnx", verbose=False, opset_version=OPSET)
        exported = onnx.load(str(path))
    return with_image_input(exported, shape, n_classes, exported.graph.output[0].name,
                            scale=False, flatten=False)


@contextlib.contextmanager
def _quiet_tf2onnx() -> Iterator[None]:
    """tf2onnx logs each rewrite at INFO and warns of numpy's future `np.object`."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)
