"""Inference for the models saved as plain arrays (numpy_dnn, numpy_cnn, logreg), in NumPy
alone: uint8 images (N, H, W, C) in, class probabilities (N, n_classes) out.

One file, on purpose: it imports nothing of nnlab, so it travels with the model. It is

- what `nnlab predict`, `nnlab evaluate` and `nnlab serve` run for these models
  (nnlab.models.base.load_predictor);
- the code of the model logged to MLflow (nnlab/models/logged_model.py logs this very file,
  with `model.npz` as its one artifact): MLflow runs it as a file, and then it also defines the
  pyfunc (the block at the end), so the logged model loads wherever MLflow and NumPy are
  installed, with no nnlab.

`model.npz` holds plain arrays, loaded with `allow_pickle=False`: a network's weights keyed
"<layer>.<name>" with "layers", the JSON list of what each layer does at inference (written by
nnlab/models/numpy/network.py: the builders decide the layers once, this file only follows
the list), "output" (softmax, or one sigmoid unit for 2 classes), "input_shape" and "inputs"
(flattened pixels or images); or a logistic
regression's "coef", "intercept" and "classes". A file that is missing, truncated or does not
fit its layers is a ModelFileError: one line naming the file.

Annotations are real, not strings (no `from __future__ import annotations`): MLflow reads
the pyfunc's `predict` hints.
"""

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_FILE = "model.npz"
CHUNK_IMAGES = 256  # images per forward pass: activations never grow with the request
CONV_CHUNK_BYTES = 8 << 20  # im2col columns per GEMM, as nnlab's Conv2D
LAYER_KINDS = ("dense", "batch_norm", "relu", "leaky_relu", "tanh", "sigmoid", "dropout",
               "conv2d", "max_pool", "flatten")


class ModelFileError(ValueError):
    """A saved model that cannot be what it claims: one line naming the file."""


def load(folder: "str | Path") -> "PortableModel":
    """The model saved in `folder` (its model.npz), checked against its own layer list."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelFileError(f"{path}: missing: the model's weights file is not there "
                             "(restore the model's folder, or log the model again)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ModelFileError(f"{path}: not a readable model file "
                             f"({' '.join(str(error).split())[:160]})") from None
    return from_arrays(arrays, path)


def from_arrays(arrays: "dict[str, np.ndarray]", path: "str | Path") -> "PortableModel":
    """The model saved as `arrays` (read from `path`, which errors name)."""
    try:
        if "coef" in arrays:
            return SavedLogisticRegression(arrays)
        if "layers" in arrays:
            return SavedNetwork(arrays)
        raise ValueError("no 'layers' or 'coef' entry: saved by an older nnlab; retrain it "
                         "with `dvc repro`")
    except (ValueError, KeyError, TypeError) as error:
        detail = f"no entry {error}" if isinstance(error, KeyError) else str(error)
        raise ModelFileError(f"{path}: {' '.join(detail.split())[:300]}") from None


class PortableModel:
    """Class probabilities for uint8 images, CHUNK_IMAGES at a time."""

    input_shape: tuple[int, ...] = ()  # (H, W, C), or () when only the pixel count is known

    def predict_proba(self, images: Any) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"expected uint8 images (N, H, W, C), got an array of shape "
                             f"{images.shape}")
        parts = [self._probabilities(_scaled(images[start:start + CHUNK_IMAGES]))
                 for start in range(0, len(images), CHUNK_IMAGES)]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else \
            np.empty((0, self.n_classes), np.float32)

    n_classes = 0

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _scaled(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1], as nnlab.arrays.contract.to_float_images."""
    return np.asarray(images, dtype=np.float32) / np.float32(255)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    exp /= exp.sum(axis=1, keepdims=True)
    return exp


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


class SavedLogisticRegression(PortableModel):
    """scikit-learn's LogisticRegression.predict_proba on flattened pixels: softmax of the
    decision function, or for 2 classes its logistic function."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]
        classes = arrays["classes"]
        if self.coef.ndim != 2 or self.intercept.shape != (self.coef.shape[0],):
            raise ValueError(f"'coef' {self.coef.shape} and 'intercept' "
                             f"{self.intercept.shape} do not fit together")
        binary = len(classes) == 2
        if self.coef.shape[0] != (1 if binary else len(classes)):
            raise ValueError(f"'coef' has {self.coef.shape[0]} rows for {len(classes)} classes")
        self.n_classes = len(classes)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        features = x.reshape(len(x), -1)
        if features.shape[1] != self.coef.shape[1]:
            raise ValueError(f"the model takes {self.coef.shape[1]} pixels an image, got "
                             f"{features.shape[1]}")
        decision = features @ self.coef.T + self.intercept
        if self.n_classes == 2:
            p = 1 / (1 + np.exp(-decision[:, 0]))  # scipy's expit, as scikit-learn
            return np.stack([1 - p, p], axis=1)
        return _softmax(decision)


class SavedNetwork(PortableModel):
    """numpy_dnn's and numpy_cnn's networks at inference: the saved layer list, in order."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.layers = [list(layer) for layer in json.loads(str(arrays["layers"]))]
        self.output = str(arrays["output"])
        if self.output not in ("softmax", "sigmoid"):
            raise ValueError(f"unknown output {self.output!r}")
        self.weights: list[dict[str, np.ndarray]] = []
        for index, (kind, *_) in enumerate(self.layers):
            if kind not in LAYER_KINDS:
                raise ValueError(f"layer {index} is a {kind!r}, which this file cannot run "
                                 f"(it runs {', '.join(LAYER_KINDS)})")
            self.weights.append({key.split(".", 1)[1]: value for key, value in arrays.items()
                                 if key.split(".", 1)[0] == str(index)})
        self.input_shape = tuple(int(size) for size in arrays["input_shape"])
        self.flat = str(arrays["inputs"]) == "flat"  # numpy_dnn: flattened pixels
        # One zero image through every layer checks each weight's shape against the layer
        # before it, now rather than at the first request.
        self.n_classes = 2 if self.output == "sigmoid" else \
            int(self._logits(np.zeros((1, *self.input_shape), np.float32)).shape[1])

    def _logits(self, x: np.ndarray) -> np.ndarray:
        if self.flat:
            x = x.reshape(len(x), -1)
        for index, ((kind, *options), weights) in enumerate(zip(self.layers, self.weights,
                                                                strict=True)):
            try:
                x = LAYERS[kind](x, weights, *options)
            except (ValueError, KeyError) as error:
                detail = f"no weight {error}" if isinstance(error, KeyError) else str(error)
                raise ValueError(f"layer {index} ({kind}) does not fit its input "
                                 f"{x.shape[1:]}: {detail}") from None
        return x

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"the model takes images of shape {self.input_shape} (H, W, C), "
                             f"got {tuple(x.shape[1:])}")
        logits = self._logits(x)
        if self.output == "sigmoid":
            p = _sigmoid(logits[:, 0])
            return np.stack([1 - p, p], axis=1)
        return _softmax(logits)


def _dense(x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    W = weights["W"]
    if W.ndim != 2 or x.shape[1] != W.shape[0]:
        raise ValueError(f"'W' has shape {W.shape}")
    out = x @ W
    if "b" in weights:
        out += weights["b"]
    return out


def _batch_norm(x: np.ndarray, weights: dict[str, np.ndarray], epsilon: float) -> np.ndarray:
    """Over the last axis with the running statistics (Dense's units, or a conv's channels)."""
    inv_std = 1 / np.sqrt(weights["running_var"] + np.float32(epsilon))
    return (x - weights["running_mean"]) * inv_std * weights["gamma"] + weights["beta"]


def _pads(size: int, kernel: int, stride: int, padding: "str | int") -> tuple[int, int, int]:
    """(output size, padding before, after), as Keras: 'same' gives ceil(size / stride)
    outputs, the odd pixel of padding after; an int pads both sides."""
    if isinstance(padding, int):
        return (size + 2 * padding - kernel) // stride + 1, padding, padding
    if padding == "valid":
        return (size - kernel) // stride + 1, 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _conv2d(x: np.ndarray, weights: dict[str, np.ndarray], stride: int,
            padding: "str | int") -> np.ndarray:
    """im2col and one GEMM per chunk of images, the columns in nnlab's Conv2D order
    (kh, kw, C), so the sums are the training code's."""
    W = weights["W"]
    n, height, width, channels = x.shape
    if W.ndim != 4 or W.shape[2] != channels:
        raise ValueError(f"'W' has shape {W.shape}")
    kh, kw, _, filters = W.shape
    out_h, top, bottom = _pads(height, kh, stride, padding)
    out_w, left, right = _pads(width, kw, stride, padding)
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride, ::stride][:, :out_h, :out_w]  # (N, oh, ow, C, kh, kw)
    columns = kh * kw * channels
    step = max(1, CONV_CHUNK_BYTES // max(out_h * out_w * columns * x.itemsize, 1))
    out = np.empty((n, out_h, out_w, filters), x.dtype)
    W2 = W.reshape(columns, filters)
    for start in range(0, n, step):
        part = windows[start:start + step].transpose(0, 1, 2, 4, 5, 3)
        np.matmul(part.reshape(-1, columns), W2,
                  out=out[start:start + step].reshape(-1, filters))
    if "b" in weights:
        out += weights["b"]
    return out


def _max_pool(x: np.ndarray, weights: dict[str, np.ndarray], size: int,
              padding: str) -> np.ndarray:
    """Max over size x size windows, stride size; 'same' pads with -inf (odd pixel after)."""
    n, height, width, channels = x.shape
    out_h, top, _ = _pads(height, size, size, padding)
    out_w, left, _ = _pads(width, size, size, padding)
    full = np.full((n, out_h * size, out_w * size, channels), -np.inf, x.dtype)
    kept_h, kept_w = min(height, out_h * size - top), min(width, out_w * size - left)
    full[:, top:top + kept_h, left:left + kept_w] = x[:, :kept_h, :kept_w]
    return full.reshape(n, out_h, size, out_w, size, channels).max(axis=(2, 4))


LAYERS: dict[str, Any] = {
    "dense": _dense,
    "batch_norm": _batch_norm,
    "relu": lambda x, weights: np.maximum(x, 0),
    "leaky_relu": lambda x, weights, slope: np.where(x > 0, x, x * np.float32(slope)),
    "tanh": lambda x, weights: np.tanh(x),
    "sigmoid": lambda x, weights: _sigmoid(x),
    "dropout": lambda x, weights: x,  # identity at inference (inverted dropout)
    "conv2d": _conv2d,
    "max_pool": _max_pool,
    "flatten": lambda x, weights: x.reshape(len(x), -1),
}


if not __package__:  # run as a file: MLflow loading the logged model
    import mlflow
    from mlflow.pyfunc import PythonModel

    class SavedModel(PythonModel):
        """The logged model: uint8 images (N, H, W, C) in, probabilities out."""

        def load_context(self, context: Any) -> None:
            self.model = load(Path(context.artifacts["weights"]).parent)

        # np.ndarray: MLflow leaves the input to the logged signature (a uint8 tensor).
        def predict(self, context: Any, model_input: np.ndarray,
                    params: dict[str, Any] | None = None) -> np.ndarray:
            return self.model.predict_proba(np.asarray(model_input, dtype=np.uint8))

    mlflow.models.set_model(SavedModel())
