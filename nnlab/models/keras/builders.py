"""The Keras models as one declarative keras.Sequential each: keras_mlp and cnn.

Each model starts with a Rescaling layer, so it takes the stored uint8 images directly and
training, evaluation and `predict` share exactly one preprocessing path. Both output logits;
`with_probabilities` adds the softmax head that MLflow logs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnlab.models.keras import spec
from nnlab.models.keras.backend import keras
from nnlab.models.keras.section import CnnParams, KerasMlpParams


def optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name not in spec.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: "
                         f"{', '.join(spec.OPTIMIZERS)}")
    class_name, arguments = spec.OPTIMIZERS[name]
    return getattr(keras.optimizers, class_name)(learning_rate, **arguments)


def _activation(name: str) -> keras.layers.Layer:
    """The activation as its own layer, with numpy_dnn's maths (leaky_relu's slope too)."""
    class_name, arguments = spec.ACTIVATIONS[name]
    return getattr(keras.layers, class_name)(**arguments)


INITIALIZERS = spec.INITIALIZERS


def _output_layer(n_classes: int, init: str, mixed: bool) -> keras.layers.Layer:
    """Logits: one sigmoid unit for 2 classes, as in the source tutorials, else one per class;
    in float32 under mixed precision, so that the loss and softmax are computed in float32."""
    return keras.layers.Dense(1 if n_classes == 2 else n_classes, kernel_initializer=init,
                              **({"dtype": "float32"} if mixed else {}))


def _sequential(name: str, input_shape: tuple[int, int, int], n_classes: int, init: str,
                mixed: bool, *,
                augment: Sequence[keras.layers.Layer] = (),
                features: Sequence[keras.layers.Layer] = (),
                hidden: Sequence[keras.layers.Layer] = ()) -> keras.Sequential:
    """Input -> augmentation (training only) -> pixels / 255 -> features -> Flatten ->
    hidden -> logits: the shape both Keras models share."""
    return keras.Sequential([keras.Input(shape=input_shape), *augment,
                             keras.layers.Rescaling(1 / 255), *features, keras.layers.Flatten(),
                             *hidden, _output_layer(n_classes, init, mixed)], name=name)


def loss(n_classes: int, weighted: bool = False) -> keras.losses.Loss:
    """Cross-entropy on logits. `weighted`: the mean over the rows' weights, so that rows
    weighted 0 (a data-parallel validation batch's padding) count for nothing."""
    reduction = {"reduction": "mean_with_sample_weight"} if weighted else {}
    if n_classes == 2:
        return keras.losses.BinaryCrossentropy(from_logits=True, **reduction)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, **reduction)


def build_mlp(
    input_shape: tuple[int, int, int], n_classes: int, params: KerasMlpParams
) -> keras.Sequential:
    """Flatten -> [Dense -> (BatchNorm) -> activation -> (Dropout)] x hidden_units -> logits."""
    init = INITIALIZERS[params.init]
    hidden: list[keras.layers.Layer] = []
    for units in params.hidden_units:
        if params.batch_norm:
            # Normalise before the activation, as numpy_dnn does; BN's beta makes a bias redundant.
            hidden += [
                keras.layers.Dense(units, use_bias=False, kernel_initializer=init),
                keras.layers.BatchNormalization(),
                _activation(params.activation),
            ]
        else:
            hidden += [keras.layers.Dense(units, kernel_initializer=init),
                       _activation(params.activation)]
        if params.dropout:
            hidden.append(keras.layers.Dropout(params.dropout))
    return _sequential("keras_mlp", input_shape, n_classes, init, params.mixed_precision,
                       augment=_augmentation(params), hidden=hidden)


def _augmentation(params: CnnParams | KerasMlpParams) -> list[keras.layers.Layer]:
    """Random shifts and flips. Keras runs these layers in training only; inference and
    `predict` see the images unchanged."""
    layers: list[keras.layers.Layer] = []
    if params.augment.shift:
        shift = params.augment.shift
        layers.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant"))
    if params.augment.flip:
        layers.append(keras.layers.RandomFlip("horizontal"))
    if keras.backend.backend() == "jax":
        # RandomTranslation says it cannot be compiled by XLA (true of TensorFlow's image op),
        # which makes Keras run the whole JAX model eagerly, step by step. Its JAX ops
        # compile, and gave the eager run's losses (tests/unit/models/test_backends.py
        # trains with augmentation on JAX).
        for layer in layers:
            layer.supports_jit = True
    return layers


def build_cnn(
    input_shape: tuple[int, int, int], n_classes: int, params: CnnParams
) -> keras.Sequential:
    """[Conv3x3 x convs -> MaxPool2x2 -> Dropout] per block -> Flatten -> Dense... -> logits."""
    init = INITIALIZERS[params.init]
    blocks: list[keras.layers.Layer] = []
    for block in params.blocks:
        for _ in range(block.convs):
            blocks.append(
                keras.layers.Conv2D(
                    block.filters, 3, padding="same", activation="relu", kernel_initializer=init
                )
            )
        blocks.append(keras.layers.MaxPooling2D(2, padding="same"))  # any input size
        if params.block_dropout:
            blocks.append(keras.layers.Dropout(params.block_dropout))
    dense: list[keras.layers.Layer] = []
    for units in params.dense_units:
        dense.append(keras.layers.Dense(units, activation="relu", kernel_initializer=init))
        if params.dense_dropout:
            dense.append(keras.layers.Dropout(params.dense_dropout))
    return _sequential("cnn", input_shape, n_classes, init, params.mixed_precision,
                       augment=_augmentation(params), features=blocks, hidden=dense)


def with_probabilities(model: keras.Model) -> keras.Sequential:
    """The logits model plus its output activation: (N, n_classes) probabilities, the same
    columns as `predict_proba`. This is the model logged to MLflow."""
    layers: list[keras.layers.Layer] = [keras.Input(shape=model.input_shape[1:]), model]
    if model.output_shape[-1] == 1:
        # One sigmoid logit z -> softmax over (0, z) = (1 - sigmoid(z), sigmoid(z)).
        pad = keras.layers.Dense(2, trainable=False, name="binary_to_two_columns")
        layers.append(pad)
    layers.append(keras.layers.Softmax())
    wrapped = keras.Sequential(layers, name=f"{model.name}_probabilities")
    if model.output_shape[-1] == 1:
        pad.set_weights([np.array([[0.0, 1.0]], np.float32), np.zeros(2, np.float32)])
    return wrapped
