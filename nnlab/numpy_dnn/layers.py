"""Layers. Each `forward(x)` caches what its `backward(dout)` needs; backward returns dx.

`params` and `grads` are dicts with the same keys, so optimizers can walk them together.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]


class Layer:
    """Base class: a layer with no parameters."""

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}

    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:
        raise NotImplementedError

    def config(self) -> dict[str, object]:
        """What it takes to rebuild this layer (saved with the weights)."""
        return {"type": type(self).__name__}


class Dense(Layer):
    """Affine layer: x (N, n_in) @ W (n_in, n_out) + b (n_out,)."""

    def __init__(self, W: Array, b: Array) -> None:
        super().__init__()
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self._x: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        self._x = x
        return x @ self.params["W"] + self.params["b"]  # (N, n_out)

    def backward(self, dout: Array) -> Array:
        assert self._x is not None, "backward() called before forward()"
        # Write into the existing gradient buffers: no per-step allocation for dW.
        np.matmul(self._x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        return dout @ self.params["W"].T  # (N, n_in)

    def config(self) -> dict[str, object]:
        n_in, n_out = self.params["W"].shape
        return {"type": "Dense", "n_in": int(n_in), "n_out": int(n_out)}


class ReLU(Layer):
    def forward(self, x: Array, training: bool = False) -> Array:
        self._positive = x > 0
        return np.maximum(x, 0)

    def backward(self, dout: Array) -> Array:
        return dout * self._positive


class LeakyReLU(Layer):
    slope = 0.01

    def forward(self, x: Array, training: bool = False) -> Array:
        self._scale = np.where(x > 0, 1.0, self.slope).astype(x.dtype)
        return x * self._scale

    def backward(self, dout: Array) -> Array:
        return dout * self._scale


class Tanh(Layer):
    def forward(self, x: Array, training: bool = False) -> Array:
        self._out = np.tanh(x)
        return self._out

    def backward(self, dout: Array) -> Array:
        return dout * (1 - self._out**2)


def sigmoid(x: Array) -> Array:
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1 / (1 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1 + exp_x)
    return out


class Sigmoid(Layer):
    def forward(self, x: Array, training: bool = False) -> Array:
        self._out = sigmoid(x)
        return self._out

    def backward(self, dout: Array) -> Array:
        return dout * self._out * (1 - self._out)


ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
}
