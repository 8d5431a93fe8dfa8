"""The convnet builder: numpy_cnn's network, from its params or from the `deep` preset.

    [Conv3x3 'same' -> (BN) -> ReLU] x convs -> MaxPool2x2 'same' -> (Dropout)   per block
    -> Flatten -> [Dense -> (BN) -> ReLU -> (Dropout)] per dense layer -> Dense(n_classes)

as the Keras cnn. `preset="deep"` is the source tutorials' DeepConvNet ("Deep Learning from
Scratch", ch. 8) layer for layer: conv 3x3 at 16, 16, 32, 32 (padded by 2), 64, 64 filters,
each padded by 1 but the fourth, ReLU after each, a 2x2 max-pool after each pair,
Affine(50) -> ReLU -> Dropout(0.5) -> Affine(10) -> Dropout(0.5). On 28x28 inputs it has
123,552 weights.
"""

from __future__ import annotations

import math
from typing import Any

from nnlab.models.numpy.arrays import np  # NumPy, or CuPy on a GPU (arrays.py)
from nnlab.models.numpy.conv import BatchNorm2D, Conv2D, Flatten, MaxPool2D
from nnlab.models.numpy.layers import Array, BatchNorm, Dense, Dropout, Layer, ReLU
from nnlab.models.numpy.network import Network, init_weights

# (filters, padding) of the DeepConvNet's convs; a 2x2 max-pool follows every second one.
DEEP_CONVS = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]


def _conv(channels: int, filters: int, padding: str | int, init: str, rng: np.random.Generator,
          bias: bool, first: bool, dtype: type) -> Conv2D:
    # He and Xavier scale by the fan-in, in_channels x kh x kw.
    W = init_weights(init, 9 * channels, filters, rng, dtype).reshape(3, 3, channels, filters)
    return Conv2D(W, np.zeros(filters, dtype) if bias else None, 1, padding,
                  input_grad=not first)


def _output_shape(layers: list[Layer], input_shape: tuple[int, int, int],
                  dtype: type) -> tuple[int, ...]:
    """The shape one image has after `layers` (run on zeros: the layers compute it)."""
    out: Array = np.zeros((1, *input_shape), dtype)
    for layer in layers:
        out = layer.forward(out)
    return tuple(out.shape[1:])


def _deep_convs(channels: int, init: str, rng: np.random.Generator, dtype: type) -> list[Layer]:
    layers: list[Layer] = []
    for index, (filters, padding) in enumerate(DEEP_CONVS):
        layers += [_conv(channels, filters, padding, init, rng, True, index == 0, dtype), ReLU()]
        channels = filters
        if index % 2:
            layers.append(MaxPool2D(2, "valid"))
    return layers


def _conv_blocks(channels: int, blocks: list[tuple[int, int]] | list[list[int]], init: str,
                 rng: np.random.Generator, block_dropout: float, batch_norm: bool,
                 dtype: type) -> list[Layer]:
    layers: list[Layer] = []
    for filters, convs in blocks:
        for _ in range(convs):
            layers.append(_conv(channels, filters, "same", init, rng, not batch_norm,
                                not layers, dtype))
            layers += [BatchNorm2D(filters, dtype=dtype)] if batch_norm else []
            layers.append(ReLU())
            channels = filters
        layers.append(MaxPool2D(2, "same"))
        layers += [Dropout(block_dropout, rng)] if block_dropout else []
    return layers


def build_cnn(
    input_shape: tuple[int, int, int] | list[int],
    blocks: list[tuple[int, int]] | list[list[int]],
    n_classes: int,
    init: str,
    rng: np.random.Generator,
    block_dropout: float = 0.0,
    dense_units: list[int] | None = None,
    dense_dropout: float = 0.0,
    batch_norm: bool = False,
    preset: str | None = None,
    dtype: type = np.float32,
) -> Network:
    """Build numpy_cnn's network for images shaped `input_shape` (H, W, C).

    `blocks` is [(filters, convs), ...]. With batch norm the convs and hidden Dense layers
    have no bias (beta takes its place). For 2 classes the output is one sigmoid unit.
    `rng` draws the initial weights and, later, every dropout mask.
    """
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes; Received: n_classes={n_classes}")
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    if preset not in (None, "deep"):
        raise ValueError(f"unknown preset {preset!r}; choose one of: deep")
    layers = (_deep_convs(shape[2], init, rng, dtype) if preset == "deep" else
              _conv_blocks(shape[2], blocks, init, rng, block_dropout, batch_norm, dtype))
    layers.append(Flatten())
    features = math.prod(_output_shape(layers, shape, dtype))
    for units in [50] if preset == "deep" else dense_units or []:
        layers.append(Dense(init_weights(init, features, units, rng, dtype),
                            None if batch_norm and not preset else np.zeros(units, dtype)))
        layers += [BatchNorm(units, dtype=dtype)] if batch_norm and not preset else []
        layers.append(ReLU())
        rate = 0.5 if preset == "deep" else dense_dropout
        layers += [Dropout(rate, rng)] if rate else []
        features = units
    outputs = 1 if n_classes == 2 else n_classes
    layers.append(Dense(init_weights(init, features, outputs, rng, dtype),
                        np.zeros(outputs, dtype)))
    if preset == "deep":
        layers.append(Dropout(0.5, rng))  # on the logits, as the tutorial's last layer
    architecture: dict[str, Any] = {
        "input_shape": list(shape), "blocks": [list(block) for block in blocks],
        "n_classes": n_classes, "block_dropout": block_dropout,
        "dense_units": list(dense_units or []), "dense_dropout": dense_dropout,
        "batch_norm": batch_norm, "preset": preset,
    }
    return Network(layers, architecture)
