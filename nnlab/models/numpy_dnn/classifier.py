"""numpy_dnn as an ImageClassifier: params in, a saved .npz out. Never imports TensorFlow."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from nnlab.models.base import EpochHook, FeatureClassifier, History, Split, to_features
from nnlab.models.numpy_dnn import (
    Network,
    TrainConfig,
    build_mlp,
    fit,
    make_optimizer,
    random_shifts,
)
from nnlab.models.numpy_dnn.params import NumpyDnnParams


class NumpyDnnClassifier(FeatureClassifier):
    name = "numpy_dnn"
    params: NumpyDnnParams

    def fit(self, train: Split, val: Split, n_classes: int,
            on_epoch: EpochHook | None = None) -> History:
        p = self.params
        rng = np.random.default_rng(self.seed)  # the only randomness: init, shuffling, dropout
        x_train, x_val = to_features(train[0]), to_features(val[0])
        self.model = network = build_mlp(
            x_train.shape[1], p.hidden_layers, n_classes, p.activation, p.init, rng,
            l2=p.l2, dropout=p.dropout, batch_norm=p.batch_norm,
        )
        optimizer = make_optimizer(
            p.optimizer, p.learning_rate,
            momentum=p.momentum, beta1=p.beta1, beta2=p.beta2, epsilon=p.epsilon,
        )
        config = TrainConfig(
            epochs=p.epochs, batch_size=p.batch_size, learning_rate_decay=p.learning_rate_decay,
            decay_rate=p.decay_rate, decay_epochs=p.decay_epochs,
            early_stopping_patience=p.early_stopping_patience, on_epoch=on_epoch,
            augment=random_shifts(train[0].shape[1:], p.augment_shift) if p.augment_shift
            else None,
        )
        history = fit(network, optimizer, (x_train, train[1]), (x_val, val[1]), config, rng)
        if history.stopped_early:
            best = history[history.best_epoch - 1]
            print(f"numpy_dnn: early stopping after epoch {len(history)}: validation loss has "
                  f"not improved for {p.early_stopping_patience} epochs; restored epoch "
                  f"{history.best_epoch} (val_loss {best['val_loss']:.4f})", file=sys.stderr)
        return history.rows

    def count_params(self) -> int:
        return self._trained().count_params()

    def save(self, directory: Path) -> None:
        self._save_arrays(directory, self._trained().to_arrays())

    @classmethod
    def load(cls, directory: Path) -> NumpyDnnClassifier:
        with cls._loading(directory) as arrays:
            network = Network.from_arrays(arrays)
        model = cls(None, seed=0)  # a loaded network needs no params: its shape is saved
        model.model = network
        return model
