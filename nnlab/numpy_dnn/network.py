"""The network: a stack of layers ending in a fused output loss."""

from __future__ import annotations

import json

import numpy as np
from numpy.typing import NDArray

from nnlab.numpy_dnn.layers import ACTIVATIONS, Array, Dense, Layer
from nnlab.numpy_dnn.losses import SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy


def _init_weights(
    init: str, n_in: int, n_out: int, rng: np.random.Generator, dtype: type
) -> Array:
    if init == "zeros":  # every hidden unit stays identical: the seeds' cautionary case
        return np.zeros((n_in, n_out), dtype=dtype)
    if init == "random":
        scale = 0.01
    elif init == "he":
        scale = np.sqrt(2.0 / n_in)
    elif init == "xavier":
        scale = np.sqrt(1.0 / n_in)
    else:
        raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    return (rng.standard_normal((n_in, n_out)) * scale).astype(dtype)


INITS = ("zeros", "random", "he", "xavier")


class Network:
    """[LINEAR -> ACTIVATION] x (L-1) -> LINEAR -> SOFTMAX (or SIGMOID for 2 classes)."""

    def __init__(
        self,
        layers: list[Layer],
        n_classes: int,
        activation: str,
        l2: float = 0.0,
    ) -> None:
        self.layers = layers
        self.n_classes = n_classes
        self.activation = activation
        self.l2 = l2
        self.loss = SigmoidBinaryCrossEntropy() if n_classes == 2 else SoftmaxCrossEntropy()

    @property
    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    def logits(self, x: Array, training: bool = False) -> Array:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def predict_proba(self, x: Array) -> Array:
        """Class probabilities, shaped (N, n_classes)."""
        return self.loss.probabilities(self.logits(x))

    def loss_and_backward(self, x: Array, labels: NDArray[np.int64]) -> tuple[float, Array]:
        """Forward + backward on one batch; fills every layer's grads. Returns (loss, probs)."""
        logits = self.logits(x, training=True)
        loss = self.loss.forward(logits, labels)
        dout = self.loss.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        if self.l2:
            for dense in self.dense_layers:
                W = dense.params["W"]
                loss += 0.5 * self.l2 * float(np.sum(W * W))
                dense.grads["W"] += self.l2 * W
        return loss, self.loss.probabilities(logits)

    def parameters(self) -> tuple[dict[str, Array], dict[str, Array]]:
        """(params, grads): flat dicts with the same keys ("0.W", "0.b", ...).

        The arrays are the layers' own, so an optimizer's in-place update changes the layers.
        """
        params: dict[str, Array] = {}
        grads: dict[str, Array] = {}
        for index, layer in enumerate(self.layers):
            for name in layer.params:
                params[f"{index}.{name}"] = layer.params[name]
                grads[f"{index}.{name}"] = layer.grads[name]
        return params, grads

    def count_params(self) -> int:
        return sum(param.size for param in self.parameters()[0].values())

    # -- state as plain arrays (the caller decides how to store them) --------------------
    def architecture(self) -> dict[str, object]:
        sizes = [self.dense_layers[0].params["W"].shape[0]]
        sizes += [dense.params["W"].shape[1] for dense in self.dense_layers]
        return {
            "layer_sizes": [int(size) for size in sizes],
            "activation": self.activation,
            "n_classes": self.n_classes,
            "l2": self.l2,
        }

    def to_arrays(self) -> dict[str, NDArray]:
        arrays: dict[str, NDArray] = {"architecture": np.array(json.dumps(self.architecture()))}
        for index, dense in enumerate(self.dense_layers):
            arrays[f"W{index}"] = dense.params["W"]
            arrays[f"b{index}"] = dense.params["b"]
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray]) -> Network:
        """Rebuild a network saved by `to_arrays`, checking every shape."""
        if "architecture" not in arrays:
            raise ValueError("not a numpy_dnn model: no 'architecture' entry")
        arch = json.loads(str(arrays["architecture"]))
        sizes = arch["layer_sizes"]
        network = build_mlp(
            sizes[0], sizes[1:-1], arch["n_classes"], arch["activation"], "zeros",
            np.random.default_rng(0), l2=arch.get("l2", 0.0),
        )
        for index, dense in enumerate(network.dense_layers):
            for name in ("W", "b"):
                key = f"{name}{index}"
                expected = dense.params[name].shape
                if key not in arrays:
                    raise ValueError(f"model is missing {key} {expected}")
                if arrays[key].shape != expected:
                    raise ValueError(
                        f"{key} has shape {arrays[key].shape}, architecture says {expected}"
                    )
                dense.params[name][...] = arrays[key]
        return network


def build_mlp(
    n_inputs: int,
    hidden_layers: list[int],
    n_classes: int,
    activation: str,
    init: str,
    rng: np.random.Generator,
    l2: float = 0.0,
    dtype: type = np.float32,
) -> Network:
    """Build the L-layer MLP. `hidden_layers=[]` gives logistic (softmax) regression.

    For 2 classes the output is one sigmoid unit, as in the seeds; otherwise n_classes logits.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}"
        )
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes; Received: n_classes={n_classes}")
    n_outputs = 1 if n_classes == 2 else n_classes
    sizes = [n_inputs, *hidden_layers, n_outputs]
    layers: list[Layer] = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(
            Dense(_init_weights(init, n_in, n_out, rng, dtype), np.zeros(n_out, dtype=dtype))
        )
        if index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Network(layers, n_classes, activation, l2)
