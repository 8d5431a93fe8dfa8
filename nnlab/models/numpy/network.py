"""The network: a stack of layers ending in a fused output loss, and the MLP builder."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy  # the saved file's format, always on the host
from numpy.typing import NDArray

from nnlab.models.numpy.arrays import np, to_host  # NumPy or CuPy (arrays.py)
from nnlab.models.numpy.layers import ACTIVATIONS, Array, BatchNorm, Dense, Dropout, Layer
from nnlab.models.numpy.losses import Loss, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy

# Weight scale per init name, as a function of fan-in. `zeros` is kept on purpose: the tutorials
# use it to show that identical units never become different (symmetry is never broken).
INIT_SCALES = {
    "zeros": lambda n_in: 0.0,
    "random": lambda n_in: 0.01,
    "he": lambda n_in: math.sqrt(2.0 / n_in),
    "xavier": lambda n_in: math.sqrt(1.0 / n_in),
}
INITS = tuple(INIT_SCALES)


def init_weights(
    init: str, n_in: int, n_out: int, rng: np.random.Generator, dtype: type = np.float32
) -> Array:
    """A weight matrix (n_in, n_out) drawn as standard normal x the init's scale."""
    if init not in INIT_SCALES:
        raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    # drawn on the host (the seed's generator), then moved to where the network computes
    return np.asarray((rng.standard_normal((n_in, n_out)) * INIT_SCALES[init](n_in)).astype(dtype))


class Network:
    """[LINEAR -> (BATCHNORM) -> ACTIVATION -> (DROPOUT)] x (L-1) -> LINEAR -> SOFTMAX
    (or a single SIGMOID unit for 2 classes).

    `architecture` holds the builder's arguments, so a saved network can be rebuilt.
    """

    def __init__(self, layers: list[Layer], architecture: dict[str, Any]) -> None:
        self.layers = layers
        self.architecture = architecture
        self.n_classes: int = architecture["n_classes"]
        self.l2: float = architecture.get("l2", 0.0)
        self.loss: Loss = (
            SigmoidBinaryCrossEntropy() if self.n_classes == 2 else SoftmaxCrossEntropy()
        )
        self.flat_params, self.flat_grads = _pack(layers)

    @property
    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    def logits(self, x: Array, training: bool = False) -> Array:
        """Forward pass: x (N, D) -> logits (N, n_outputs). x may be on the host: a batch
        goes to the GPU here, if the network is there."""
        x = np.asarray(x)
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def predict_proba(self, x: Array) -> Array:
        """Class probabilities, shaped (N, n_classes), on the host."""
        return to_host(self.loss.probabilities(self.logits(x)))

    def bytes_per_sample(self, input_shape: tuple[int, ...]) -> int:
        """What one more sample costs a forward pass in inference mode: every layer's output
        and kept buffers, measured on one zero sample of `input_shape` (no batch axis)."""
        x: Array = np.zeros((1, *input_shape), np.float32)
        total = x.nbytes
        for layer in self.layers:
            output = layer.forward(x)
            total += output.nbytes + layer.scratch_bytes(x)
            x = output
        return total

    def loss_and_backward(self, x: Array, labels: NDArray[np.int64]) -> tuple[float, Array]:
        """Forward + backward on one batch in training mode; fills every layer's grads.

        Returns:
            (loss including the L2 term, class probabilities (N, n_classes) on the host).
        """
        loss = self.loss.forward(self.logits(x, training=True), labels)
        dout = self.loss.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        if self.l2:
            for dense in self.dense_layers:
                W = dense.params["W"]
                loss += 0.5 * self.l2 * float(np.vdot(W, W))  # vdot: no (n_in, n_out) temporary
                dense.grads["W"] += self.l2 * W
        return loss, to_host(self.loss.probs)

    def parameters(self) -> tuple[dict[str, Array], dict[str, Array]]:
        """(params, grads): flat dicts with the same keys ("0.W", "0.b", "1.gamma", ...).

        The arrays are the layers' own, so an optimizer's in-place update changes the layers.
        """
        params: dict[str, Array] = {}
        grads: dict[str, Array] = {}
        for index, layer in enumerate(self.layers):
            for name in layer.params:
                params[f"{index}.{name}"] = layer.params[name]
                grads[f"{index}.{name}"] = layer.grads[name]
        return params, grads

    def flat_parameters(self) -> tuple[dict[str, Array], dict[str, Array]]:
        """(params, grads) as one flat array each, for an optimizer's single update call.

        Every layer's params and grads are views into these two buffers (see `_pack`).
        """
        return {"flat": self.flat_params}, {"flat": self.flat_grads}

    def count_params(self) -> int:
        """Trainable parameters (batch-norm running statistics are not counted, as in Keras)."""
        return sum(param.size for param in self.parameters()[0].values())

    def weights(self) -> dict[str, Array]:
        """Every array inference needs (params and state), keyed "index.name"; live views."""
        arrays: dict[str, Array] = {}
        for index, layer in enumerate(self.layers):
            for name, array in (*layer.params.items(), *layer.state.items()):
                arrays[f"{index}.{name}"] = array
        return arrays

    def set_weights(self, arrays: dict[str, NDArray[Any]]) -> None:
        """Copy arrays into the network, checking that every key and shape matches."""
        for key, target in self.weights().items():
            if key not in arrays:
                raise ValueError(f"weights are missing {key!r} {target.shape}")
            if arrays[key].shape != target.shape:
                raise ValueError(
                    f"{key!r} has shape {arrays[key].shape}, architecture says {target.shape}"
                )
            target[...] = np.asarray(arrays[key])  # onto the GPU, if the network is there

    # -- saving: plain arrays only; the caller decides where they go ----------------------
    def to_arrays(self, input_shape: tuple[int, ...] | None = None,
                  flat_inputs: bool = False) -> dict[str, NDArray[Any]]:
        """The architecture and every weight; with the images' `input_shape` (H, W, C),
        also what inference needs without this code (nnlab/models/portable.py): "layers",
        each layer's spec() in order, "output", "input_shape", and "inputs": "flat" when
        the network takes flattened pixels, else "images"."""
        arrays: dict[str, NDArray[Any]] = {
            "architecture": numpy.array(json.dumps(self.architecture))
        }
        arrays.update({key: numpy.array(to_host(array)) for key, array in self.weights().items()})
        if input_shape is not None:
            arrays["layers"] = numpy.array(json.dumps([layer.spec() for layer in self.layers]))
            arrays["output"] = numpy.array("sigmoid" if self.n_classes == 2 else "softmax")
            arrays["input_shape"] = numpy.array(input_shape, numpy.int64)
            arrays["inputs"] = numpy.array("flat" if flat_inputs else "images")
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]],
                    build: Callable[..., Network] | None = None) -> Network:
        """Rebuild a network saved by `to_arrays` with `build` (its builder: build_mlp by
        default, convnet.build_cnn for numpy_cnn), checking each shape against its
        architecture."""
        if "architecture" not in arrays:
            raise ValueError("not a numpy model: no 'architecture' entry")
        try:
            architecture = json.loads(str(arrays["architecture"]))
            network = (build or build_mlp)(
                **architecture, init="zeros", rng=numpy.random.default_rng(0),
                dtype=arrays["0.W"].dtype.type if "0.W" in arrays else numpy.float32,
            )
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"unreadable numpy model architecture: {error}") from None
        network.set_weights(arrays)
        return network


ALIGN = 16  # elements: each array starts on a 64-byte boundary of its buffer (an AVX-512 vector)


def _pack(layers: list[Layer]) -> tuple[Array, Array]:
    """Move every layer's params into one contiguous buffer and its grads into another, and
    make the layers' arrays views into them: one optimizer call then updates the whole
    network, with no walk over layers and no per-step allocation. The gaps left for
    alignment hold zeros in both buffers, which no optimizer moves."""
    entries = [(layer, name) for layer in layers for name in layer.params]
    dtype = np.result_type(*(layer.params[name] for layer, name in entries)) if entries \
        else np.float32
    starts, size = [], 0
    for layer, name in entries:
        starts.append(size)
        size += -(-layer.params[name].size // ALIGN) * ALIGN
    params, grads = np.zeros(size, dtype=dtype), np.zeros(size, dtype=dtype)
    for (layer, name), start in zip(entries, starts, strict=True):
        value = layer.params[name]
        layer.params[name] = params[start : start + value.size].reshape(value.shape)
        layer.params[name][...] = value
        layer.grads[name] = grads[start : start + value.size].reshape(value.shape)
    return params, grads


def build_mlp(
    n_inputs: int,
    hidden_layers: list[int],
    n_classes: int,
    activation: str,
    init: str,
    rng: np.random.Generator,
    l2: float = 0.0,
    dropout: float = 0.0,
    batch_norm: bool = False,
    dtype: type = np.float32,
) -> Network:
    """Build the L-layer MLP. `hidden_layers=[]` gives logistic (softmax) regression.

    Each hidden layer is Dense -> BatchNorm (optional) -> activation -> Dropout (optional);
    with batch norm the Dense layers have no bias (beta takes its place), as in Keras.
    For 2 classes the output is one sigmoid unit, as in the tutorials; otherwise n_classes logits.
    `rng` draws the initial weights and, later, every dropout mask.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}"
        )
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes; Received: n_classes={n_classes}")
    sizes = [n_inputs, *hidden_layers, 1 if n_classes == 2 else n_classes]
    layers: list[Layer] = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        is_output = index == len(sizes) - 2
        W = init_weights(init, n_in, n_out, rng, dtype)
        b: Array | None = None if batch_norm and not is_output else np.zeros(n_out, dtype=dtype)
        layers.append(Dense(W, b, input_grad=index > 0))
        if is_output:
            break  # the output layer's activation is fused into the loss
        if batch_norm:
            layers.append(BatchNorm(n_out, dtype=dtype))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(Dropout(dropout, rng))
    architecture = {
        "n_inputs": n_inputs,
        "hidden_layers": list(hidden_layers),
        "n_classes": n_classes,
        "activation": activation,
        "l2": l2,
        "dropout": dropout,
        "batch_norm": batch_norm,
    }
    return Network(layers, architecture)
