"""numpy_dnn (the MLP) and numpy_cnn (the convnet) as ImageClassifiers: params in, a saved
.npz out. Both train with the same loop, optimizers and divergence guard. Never imports
TensorFlow."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.arrays.contract import to_float_images
from nnlab.models.base import Checkpoint, EpochHook, FeatureClassifier, History, Split
from nnlab.models.numpy import (
    FitState,
    Network,
    TrainConfig,
    arrays,
    build_mlp,
    fit,
    make_optimizer,
    random_shifts,
)
from nnlab.models.numpy.convnet import build_cnn
from nnlab.models.numpy.section import NumpyCnnParams, NumpyDnnParams


class _NumpyClassifier(FeatureClassifier):
    """What both numpy models share: fit (one seeded generator for init, shuffling and
    dropout), save and load. Subclasses build their network and shape their inputs."""

    flat_inputs = True  # the network takes flattened pixels (N, H*W*C), not images

    def __init__(self, params: Any, seed: int) -> None:
        super().__init__(params, seed)
        # NumPy, or CuPy on a GPU (nnlab/models/numpy/arrays.py); a loaded model predicts
        # where the process computes already.
        self.device = arrays.use(params.device, self.name)
        self.image_shape: tuple[int, ...] | None = None  # (H, W, C), known once fit or loaded

    def runtime(self) -> dict[str, str]:
        return {"backend": "numpy" if self.device == "cpu" else "cupy", "device": self.device}

    def build(self, input_shape: tuple[int, int, int], n_classes: int,
              rng: np.random.Generator) -> Network:
        raise NotImplementedError

    def schedule(self) -> dict[str, Any]:
        """TrainConfig's learning-rate decay arguments; none: a constant learning rate."""
        return {}

    def _config(self, image_shape: tuple[int, int, int],
                on_epoch: EpochHook | None) -> TrainConfig:
        p = self.params
        return TrainConfig(
            epochs=p.epochs, batch_size=p.batch_size, **self.schedule(),
            early_stopping_patience=p.early_stopping_patience, on_epoch=on_epoch,
            augment=random_shifts(image_shape, p.augment_shift, p.augment_subpixel)
            if p.augment_shift else None,
            model=self.name,
        )

    def fit(self, train: Split, val: Split, n_classes: int, on_epoch: EpochHook | None = None,
            checkpoint: Checkpoint | None = None) -> History:
        p = self.params
        rng = np.random.default_rng(self.seed)  # the only randomness: init, shuffling, dropout
        image_shape = (int(train[0].shape[1]), int(train[0].shape[2]), int(train[0].shape[3]))
        self.image_shape = image_shape
        self.model = network = self.build(image_shape, n_classes, rng)
        self.__dict__.pop("_image_bytes", None)  # a new network: bytes_per_image measures anew
        optimizer = make_optimizer(
            p.optimizer, p.learning_rate,
            momentum=p.momentum, beta1=p.beta1, beta2=p.beta2, epsilon=p.epsilon,
        )
        saved = checkpoint.saved() if checkpoint is not None else None
        config = self._config(image_shape, on_epoch)
        if checkpoint is not None:
            config = replace(config, checkpoint=lambda state: checkpoint.save(
                *state.to_checkpoint()))
        history = fit(network, optimizer, (self.inputs(train[0]), train[1]),
                      (self.inputs(val[0]), val[1]), config, rng,
                      resume=FitState.from_checkpoint(*saved) if saved else None)
        if history.stopped_early:
            best = history[history.best_epoch - 1]
            print(f"{self.name}: early stopping after epoch {len(history)}: validation loss "
                  f"has not improved for {p.early_stopping_patience} epochs; restored epoch "
                  f"{history.best_epoch} (val_loss {best['val_loss']:.4f})", file=sys.stderr)
        return history.rows

    def count_params(self) -> int:
        return int(self._trained().count_params())

    def bytes_per_image(self, image_shape: tuple[int, ...]) -> int:
        # Measured once per shape (a forward pass of one image): a served model answers
        # many small requests.
        measured: dict[tuple[int, ...], int] = self.__dict__.setdefault("_image_bytes", {})
        if image_shape not in measured:
            features = self.inputs(np.zeros((1, *image_shape), np.uint8))
            measured[image_shape] = features.nbytes + int(
                self._trained().bytes_per_sample(features.shape[1:]))
        return measured[image_shape]

    def save(self, directory: Path) -> None:
        self._save_arrays(directory, self._trained().to_arrays(self.image_shape,
                                                               self.flat_inputs))

    @classmethod
    def _rebuild(cls, arrays: dict[str, NDArray[Any]]) -> Network:
        return Network.from_arrays(arrays)

    @classmethod
    def load(cls, directory: Path) -> _NumpyClassifier:
        with cls._loading(directory) as arrays:
            network = cls._rebuild(arrays)
        shape = (tuple(int(size) for size in arrays["input_shape"]) if "input_shape" in arrays
                 else None)
        return cls.restored(model=network, device="cpu", image_shape=shape)


class NumpyDnnClassifier(_NumpyClassifier):
    """numpy_dnn: the MLP, on flattened pixels."""

    name = "numpy_dnn"
    params: NumpyDnnParams

    def schedule(self) -> dict[str, Any]:
        p = self.params
        return {"learning_rate_decay": p.learning_rate_decay, "decay_rate": p.decay_rate,
                "decay_epochs": p.decay_epochs}

    def build(self, input_shape: tuple[int, int, int], n_classes: int,
              rng: np.random.Generator) -> Network:
        p = self.params
        return build_mlp(int(np.prod(input_shape)), p.hidden_layers, n_classes, p.activation,
                         p.init, rng, l2=p.l2, dropout=p.dropout, batch_norm=p.batch_norm)


class NumpyCnnClassifier(_NumpyClassifier):
    """numpy_cnn: the convnet, on images (N, H, W, C) scaled to [0, 1]."""

    name = "numpy_cnn"
    params: NumpyCnnParams
    flat_inputs = False

    @staticmethod
    def inputs(images: NDArray[np.uint8]) -> NDArray[np.float32]:
        return to_float_images(images)

    def build(self, input_shape: tuple[int, int, int], n_classes: int,
              rng: np.random.Generator) -> Network:
        p = self.params
        return build_cnn(input_shape, [(block.filters, block.convs) for block in p.blocks],
                         n_classes, p.init, rng, block_dropout=p.block_dropout,
                         dense_units=p.dense_units, dense_dropout=p.dense_dropout,
                         batch_norm=p.batch_norm, preset=p.preset)

    @classmethod
    def _rebuild(cls, arrays: dict[str, NDArray[Any]]) -> Network:
        return Network.from_arrays(arrays, build=build_cnn)
