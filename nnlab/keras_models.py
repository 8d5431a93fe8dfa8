"""Keras models: builders for keras_mlp and cnn, and their ImageClassifier wrappers.

Each model starts with a Rescaling layer, so it takes the stored uint8 images directly and
training, evaluation and `predict` share exactly one preprocessing path.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab import keras_spec
from nnlab.divergence import DivergenceGuard
from nnlab.files import reading
from nnlab.models import (
    RESTORE_MODEL,
    EpochHook,
    History,
    ImageClassifier,
    Split,
    trained_file,
)
from nnlab.params import CnnParams, KerasMlpParams

# Fixed thread counts: with op determinism, same params + seed give identical weights.
THREADS = 2
MODEL_FILE = "model.keras"

# Hide TensorFlow's C++ INFO/WARNING logs (lines printed before absl starts still show).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, make TensorFlow ops deterministic, and fix the
    thread counts. TensorFlow accepts thread counts only before its runtime starts: when it
    has already started with other counts (a second model in one process), say so, since
    results may then differ from a fresh `dvc repro`."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads()) == (THREADS, 1):
        return
    try:
        threading.set_intra_op_parallelism_threads(THREADS)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as error:
        warnings.warn(f"TensorFlow's thread counts stay at intra="
                      f"{threading.get_intra_op_parallelism_threads()}, inter="
                      f"{threading.get_inter_op_parallelism_threads()} ({error}); results may "
                      f"differ from a fresh process, which uses {THREADS} and 1", stacklevel=2)


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name not in keras_spec.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: "
                         f"{', '.join(keras_spec.OPTIMIZERS)}")
    class_name, arguments = keras_spec.OPTIMIZERS[name]
    return getattr(keras.optimizers, class_name)(learning_rate, **arguments)


def _activation(name: str) -> keras.layers.Layer:
    """The activation as its own layer, with numpy_dnn's maths (leaky_relu's slope too)."""
    class_name, arguments = keras_spec.ACTIVATIONS[name]
    return getattr(keras.layers, class_name)(**arguments)


INITIALIZERS = keras_spec.INITIALIZERS


def _output_layer(n_classes: int, init: str) -> keras.layers.Layer:
    """Logits: one sigmoid unit for 2 classes, as in the seeds, else one per class."""
    return keras.layers.Dense(1 if n_classes == 2 else n_classes, kernel_initializer=init)


def _sequential(name: str, input_shape: tuple[int, int, int], n_classes: int, init: str, *,
                augment: Sequence[keras.layers.Layer] = (),
                features: Sequence[keras.layers.Layer] = (),
                hidden: Sequence[keras.layers.Layer] = ()) -> keras.Sequential:
    """Input -> augmentation (training only) -> pixels / 255 -> features -> Flatten ->
    hidden -> logits: the shape both Keras models share."""
    return keras.Sequential([keras.Input(shape=input_shape), *augment,
                             keras.layers.Rescaling(1 / 255), *features, keras.layers.Flatten(),
                             *hidden, _output_layer(n_classes, init)], name=name)


def _loss(n_classes: int) -> keras.losses.Loss:
    if n_classes == 2:
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


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
    return _sequential("keras_mlp", input_shape, n_classes, init, augment=_augmentation(params),
                       hidden=hidden)


def _augmentation(params: CnnParams | KerasMlpParams) -> list[keras.layers.Layer]:
    """Random shifts and flips. Keras runs these layers in training only; inference and
    `predict` see the images unchanged."""
    layers: list[keras.layers.Layer] = []
    if params.augment.shift:
        shift = params.augment.shift
        layers.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant"))
    if params.augment.flip:
        layers.append(keras.layers.RandomFlip("horizontal"))
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
    return _sequential("cnn", input_shape, n_classes, init, augment=_augmentation(params),
                       features=blocks, hidden=dense)


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


EVAL_BATCH = 256  # validation and prediction: no gradients, so bigger batches are cheaper


def training_batches(images: NDArray[np.uint8], labels: NDArray[np.int64], batch_size: int,
                     seed: int) -> tf.data.Dataset:
    """An endless tf.data pipeline of shuffled (images, labels) batches: one epoch after
    another, each in a new order (the same orders for the same seed).

    `fit` keeps one iterator over it for the whole run. Given NumPy arrays, Keras builds a
    new input pipeline iterator every epoch, which took about 12 ms here. Only indices are
    shuffled, so the images are never copied into a shuffle buffer, whatever their size."""
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    order = tf.data.Dataset.range(len(labels)).shuffle(len(labels), seed=seed,
                                                      reshuffle_each_iteration=True)
    return (order.batch(batch_size)
            .map(lambda index: (tf.gather(images_t, index), tf.gather(labels_t, index)))
            .repeat())


def evaluation_batches(images: NDArray[np.uint8], labels: NDArray[np.int64]) -> tf.data.Dataset:
    """One pass over (images, labels) in order. It must end: Keras runs up to
    steps_per_execution (a training epoch's steps) validation steps per call, and would
    otherwise go round the validation set again."""
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(EVAL_BATCH)


class _GuardCallback(keras.callbacks.Callback):
    """Stops a diverging fit as soon as nnlab.divergence's rule says so, then hands the
    epoch's row to `on_epoch` (which may raise to stop training: a sweep's pruner)."""

    def __init__(self, guard: DivergenceGuard, on_epoch: EpochHook | None = None) -> None:
        super().__init__()
        self.guard = guard
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.guard.check_epoch(float((logs or {}).get("loss", math.nan)), epoch + 1)
        if self.on_epoch is not None:
            self.on_epoch({"epoch": epoch + 1,
                           **{key: float(value) for key, value in (logs or {}).items()}})


class _KerasClassifier(ImageClassifier):
    name: str  # the params.yaml key
    flavor = "keras"
    params: KerasMlpParams | CnnParams

    def __init__(self, params: KerasMlpParams | CnnParams, seed: int) -> None:
        super().__init__(params, seed)
        self.model: keras.Model | None = None

    def build(self, input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
        raise NotImplementedError

    def fit(self, train: Split, val: Split, n_classes: int,
            on_epoch: EpochHook | None = None) -> History:
        configure_determinism(self.seed)
        images, labels = train
        self.model = self.build(tuple(images.shape[1:]), n_classes)
        accuracy = (
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)  # on logits
            if n_classes == 2
            else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        )
        steps = math.ceil(len(labels) / self.params.batch_size)
        self.model.compile(
            optimizer=_optimizer(self.params.optimizer, self.params.learning_rate),
            loss=_loss(n_classes),
            metrics=[accuracy],
            # Run a whole epoch per call: small models are dominated by per-step overhead.
            steps_per_execution=steps,
        )
        guard = DivergenceGuard(self.name, n_classes, self.params.learning_rate)
        result = self.model.fit(
            training_batches(images, labels, self.params.batch_size, self.seed),
            steps_per_epoch=steps,
            shuffle=False,  # the pipeline shuffles, with the seed
            validation_data=evaluation_batches(*val),
            epochs=self.params.epochs,
            verbose="auto" if sys.stdout.isatty() else 2,  # one line per epoch in logs
            callbacks=[*self._callbacks(), _GuardCallback(guard, on_epoch)],
        )
        rows = [
            {"epoch": epoch + 1, **{key: float(values[epoch]) for key, values in
                                    result.history.items()}}
            for epoch in range(len(result.history["loss"]))
        ]
        # The whole history once more, now that the end of training is known (early
        # stopping); TerminateOnNaN stops mid-epoch, and the weights tell even if no logged
        # loss does.
        final = DivergenceGuard(self.name, n_classes, self.params.learning_rate)
        for row in rows:
            final.check_epoch(row["loss"], int(row["epoch"]), row.get("accuracy"),
                              last=row is rows[-1])
        if not all(np.isfinite(weights).all() for weights in self.model.get_weights()):
            final.check_batch(math.nan, len(rows))
        return rows

    def _callbacks(self) -> list[keras.callbacks.Callback]:
        callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
        if self.params.early_stopping_patience is not None:
            # Keras restores the best epoch's weights at the end, stopped early or not.
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss",
                    patience=self.params.early_stopping_patience,
                    restore_best_weights=True,
                    verbose=1,
                )
            )
        return callbacks

    def _trained(self) -> keras.Model:
        if self.model is None:
            raise RuntimeError("fit() or load() the model first")
        return self.model

    def predict_proba(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        logits = self._trained().predict(np.asarray(images), batch_size=EVAL_BATCH, verbose=0)
        if logits.shape[1] == 1:  # one sigmoid unit -> (N, 2) like softmax
            p = tf.math.sigmoid(logits[:, 0]).numpy()
            return np.stack([1 - p, p], axis=1).astype(np.float32)
        return tf.nn.softmax(logits, axis=1).numpy().astype(np.float32)

    def count_params(self) -> int:
        return int(self._trained().count_params())

    def probability_model(self) -> keras.Model:
        """The trained model with a softmax head, as logged to MLflow."""
        return with_probabilities(self._trained())

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # Keras insists on the .keras suffix, so the temporary file keeps it.
        tmp = directory / f"partial.{MODEL_FILE}"
        self._trained().save(tmp)
        os.replace(tmp, directory / MODEL_FILE)

    @classmethod
    def load(cls, directory: Path) -> _KerasClassifier:
        path = trained_file(directory, MODEL_FILE, cls.name)
        classifier = cls.__new__(cls)
        ImageClassifier.__init__(classifier, None, seed=0)
        with reading(path, f"the {cls.name} model", RESTORE_MODEL):
            classifier.model = keras.models.load_model(path, safe_mode=True, compile=False)
        return classifier


class KerasMlpClassifier(_KerasClassifier):
    name = "keras_mlp"
    params: KerasMlpParams

    def build(self, input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
        return build_mlp(input_shape, n_classes, self.params)


class CnnClassifier(_KerasClassifier):
    name = "cnn"
    params: CnnParams

    def build(self, input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
        return build_cnn(input_shape, n_classes, self.params)
