"""Layers. Each `forward(x)` caches what its `backward(dout)` needs; backward returns dx.

`params` and `grads` are dicts with the same keys, so optimizers can walk them together.
Gradients are always written *into* the existing `grads` arrays (never rebound), because
the training loop and the optimizers hold references to them.

Shapes: x is (N, D) for a batch of N samples with D features.
"""

from __future__ import annotations

from numpy.typing import NDArray

from nnlab.core.activations import LEAKY_RELU_SLOPE
from nnlab.models.numpy.arrays import np  # NumPy, or CuPy on a GPU (arrays.py)

Array = NDArray[np.floating]


class Layer:
    """Base class: a layer with no parameters and no state."""

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        # Non-trainable arrays that inference needs (batch-norm running statistics).
        self.state: dict[str, Array] = {}

    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def spec(self) -> list[object]:
        """What the layer does at inference, as saved in model.npz's "layers" list and run
        by nnlab/models/portable.py: its kind, then its options."""
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:
        """Fill `grads` and return dx. May overwrite `dout`, which the network never reuses."""
        raise NotImplementedError

    def scratch_bytes(self, x: Array) -> int:
        """Bytes of the buffers the layer keeps for inputs shaped as x (Conv2D's columns)."""
        return 0


class Dense(Layer):
    """Affine layer: x (N, n_in) @ W (n_in, n_out) + b (n_out,).

    `b=None` leaves the bias out (before batch norm, whose beta makes it redundant).
    `input_grad=False` (the network's first layer) skips dx = dout @ W.T: nobody needs the
    gradient of the input pixels, and for 784 inputs that matmul is a third of the layer's cost.
    """

    def __init__(self, W: Array, b: Array | None, input_grad: bool = True) -> None:
        super().__init__()
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.input_grad = input_grad
        self._x: Array | None = None

    def spec(self) -> list[object]:
        return ["dense"]

    def forward(self, x: Array, training: bool = False) -> Array:
        self._x = x
        out = x @ self.params["W"]  # (N, n_out)
        if "b" in self.params:
            out += self.params["b"]
        return out

    def backward(self, dout: Array) -> Array:
        if self._x is None:
            raise RuntimeError("Dense.backward() called before forward()")
        np.matmul(self._x.T, dout, out=self.grads["W"])  # (n_in, n_out), no allocation
        if "b" in self.grads:
            np.sum(dout, axis=0, out=self.grads["b"])
        if not self.input_grad:
            return dout[:, :0]  # (N, 0): a cheap placeholder, never used
        return dout @ self.params["W"].T  # (N, n_in)


class ReLU(Layer):
    def spec(self) -> list[object]:
        return ["relu"]

    def forward(self, x: Array, training: bool = False) -> Array:
        self._out = np.maximum(x, 0)
        return self._out

    def backward(self, dout: Array) -> Array:
        # Multiplying by the boolean mask avoids boolean-index scatter in the hot path.
        return np.multiply(dout, self._out > 0, out=dout)




class LeakyReLU(Layer):
    slope = LEAKY_RELU_SLOPE

    def spec(self) -> list[object]:
        return ["leaky_relu", self.slope]

    def forward(self, x: Array, training: bool = False) -> Array:
        self._positive = x > 0
        return np.where(self._positive, x, x * self.slope)

    def backward(self, dout: Array) -> Array:
        return np.where(self._positive, dout, dout * self.slope)


class Tanh(Layer):
    def spec(self) -> list[object]:
        return ["tanh"]

    def forward(self, x: Array, training: bool = False) -> Array:
        self._out = np.tanh(x)
        return self._out

    def backward(self, dout: Array) -> Array:
        return dout * (1 - self._out * self._out)


def sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x)), written via tanh so it never overflows and needs no masking."""
    return 0.5 * (1 + np.tanh(0.5 * x))


class Sigmoid(Layer):
    def spec(self) -> list[object]:
        return ["sigmoid"]

    def forward(self, x: Array, training: bool = False) -> Array:
        self._out = sigmoid(x)
        return self._out

    def backward(self, dout: Array) -> Array:
        return dout * self._out * (1 - self._out)


class Dropout(Layer):
    """Inverted dropout: at training time zero each unit with probability `rate` and scale
    the rest by 1 / (1 - rate), so inference needs no rescaling. Identity at inference.

    `rng` is the network's generator (shared with init and shuffling), so one seed fixes
    every mask.
    """

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1); Received: rate={rate}")
        self.rate = rate
        self.rng = rng
        self._scaled_mask: Array | None = None

    def spec(self) -> list[object]:
        return ["dropout"]

    def forward(self, x: Array, training: bool = False) -> Array:
        if not training or self.rate == 0:
            self._scaled_mask = None
            return x
        keep = 1 - self.rate
        # (N, D) in [0, 1), drawn on the host: the same masks on a GPU
        uniform = np.asarray(self.rng.random(x.shape, dtype=x.dtype))
        self._scaled_mask = (uniform < keep) * x.dtype.type(1 / keep)
        return x * self._scaled_mask

    def backward(self, dout: Array) -> Array:
        if self._scaled_mask is None:
            return dout
        return np.multiply(dout, self._scaled_mask, out=dout)


class BatchNorm(Layer):
    """Batch normalisation over the batch axis (Ioffe & Szegedy, 2015), Keras's defaults.

    Training normalises with the batch's mean and (biased) variance and updates running
    averages; inference uses the running averages. gamma and beta are trained.
    """

    def __init__(
        self, n_features: int, momentum: float = 0.99, epsilon: float = 1e-3,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        self.momentum, self.epsilon = momentum, epsilon
        self.params = {
            "gamma": np.ones(n_features, dtype=dtype),
            "beta": np.zeros(n_features, dtype=dtype),
        }
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.state = {
            "running_mean": np.zeros(n_features, dtype=dtype),
            "running_var": np.ones(n_features, dtype=dtype),
        }

    def spec(self) -> list[object]:
        return ["batch_norm", self.epsilon]

    def forward(self, x: Array, training: bool = False) -> Array:
        if training:
            mean = x.mean(axis=0)  # (D,)
            var = x.var(axis=0)
            # Running averages, in place: the saved state is these very arrays.
            self.state["running_mean"] += (1 - self.momentum) * (mean - self.state["running_mean"])
            self.state["running_var"] += (1 - self.momentum) * (var - self.state["running_var"])
        else:
            mean, var = self.state["running_mean"], self.state["running_var"]
        self._inv_std = 1 / np.sqrt(var + self.epsilon)  # (D,)
        self._x_hat = (x - mean) * self._inv_std  # (N, D)
        return self._x_hat * self.params["gamma"] + self.params["beta"]

    def backward(self, dout: Array) -> Array:
        n = dout.shape[0]
        np.sum(dout * self._x_hat, axis=0, out=self.grads["gamma"])
        np.sum(dout, axis=0, out=self.grads["beta"])
        dx_hat = dout * self.params["gamma"]  # (N, D)
        # The compact form of the batch-norm gradient (mean and variance depend on x too).
        return (self._inv_std / n) * (
            n * dx_hat - dx_hat.sum(axis=0) - self._x_hat * (dx_hat * self._x_hat).sum(axis=0)
        )


ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
}
