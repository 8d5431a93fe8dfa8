"""keras_mlp and cnn as ImageClassifiers: fit with determinism, early stopping and the
divergence guard; predict probabilities; save and load .keras files in safe mode."""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nnlab.core.files import reading
from nnlab.core.loss import DivergenceGuard
from nnlab.models.base import (
    RESTORE_MODEL,
    Checkpoint,
    EpochHook,
    History,
    ImageClassifier,
    Split,
    trained_file,
)
from nnlab.models.keras.backend import keras, tf
from nnlab.models.keras.builders import build_cnn, build_mlp, loss, optimizer, with_probabilities
from nnlab.models.keras.inference import Predictor
from nnlab.models.keras.inputs import evaluation_batches, training_batches
from nnlab.models.keras.params import CnnParams, KerasMlpParams
from nnlab.models.keras.training_state import (
    Checkpointing,
    history_row,
    restore,
    restore_early_stopping,
)

# Fixed thread counts: with op determinism, same params + seed give identical weights.
THREADS = 2
MODEL_FILE = "model.keras"


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


class _GuardCallback(keras.callbacks.Callback):
    """Stops a diverging fit as soon as nnlab.core.loss's rule says so, then hands the
    epoch's row to `on_epoch` (which may raise to stop training: a sweep's pruner)."""

    def __init__(self, guard: DivergenceGuard, on_epoch: EpochHook | None = None) -> None:
        super().__init__()
        self.guard = guard
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.guard.check_epoch(float((logs or {}).get("loss", math.nan)), epoch + 1)
        if self.on_epoch is not None:
            self.on_epoch(history_row(epoch, logs))


class _KerasClassifier(ImageClassifier):
    name: str  # the params.yaml key
    flavor = "keras"
    params: KerasMlpParams | CnnParams

    def __init__(self, params: KerasMlpParams | CnnParams, seed: int) -> None:
        super().__init__(params, seed)
        self.model: keras.Model | None = None

    def build(self, input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
        raise NotImplementedError

    def fit(self, train: Split, val: Split, n_classes: int, on_epoch: EpochHook | None = None,
            checkpoint: Checkpoint | None = None) -> History:
        configure_determinism(self.seed)
        images, labels = train
        self.model = self.build(tuple(images.shape[1:]), n_classes)
        steps = math.ceil(len(labels) / self.params.batch_size)
        self._compile(n_classes, steps)
        guard = DivergenceGuard(self.name, n_classes, self.params.learning_rate)
        saved = checkpoint.saved() if checkpoint is not None else None
        rows: History = [dict(row) for row in saved[1]["rows"]] if saved else []
        for row in rows:  # the guard's streak, as it was
            guard.check_epoch(row["loss"], int(row["epoch"]), row.get("accuracy"))
        callbacks = self._callbacks()
        early = next((callback for callback in callbacks
                      if isinstance(callback, keras.callbacks.EarlyStopping)), None)
        if checkpoint is not None:
            callbacks.append(Checkpointing(checkpoint, early, rows, saved))
        if saved:
            restore(self.model, saved[0])
        done = len(rows)
        if saved and (saved[1]["stopped"] or done >= self.params.epochs):
            if early is not None:  # as EarlyStopping leaves a finished fit: its best epoch
                restore_early_stopping(early, *saved)
                if early.best_weights is not None:
                    self.model.set_weights(early.best_weights)
        else:
            result = self.model.fit(
                training_batches(images, labels, self.params.batch_size, self.seed,
                                 skip=done * steps),
                steps_per_epoch=steps,
                shuffle=False,  # the pipeline shuffles, with the seed
                validation_data=evaluation_batches(*val),
                epochs=self.params.epochs,
                initial_epoch=done,
                verbose=0,  # the train stage shows the epochs (nnlab/core/progress.py)
                callbacks=[*callbacks, _GuardCallback(guard, on_epoch)],
            )
            rows = rows[:done] + [history_row(done + index, {
                key: values[index] for key, values in result.history.items()})
                for index in range(len(result.history["loss"]))]
        self._say_early_stop(rows)
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

    def _compile(self, n_classes: int, steps: int) -> None:
        accuracy = (
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)  # on logits
            if n_classes == 2
            else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        )
        self._trained().compile(
            optimizer=optimizer(self.params.optimizer, self.params.learning_rate),
            loss=loss(n_classes),
            metrics=[accuracy],
            # Run a whole epoch per call: small models are dominated by per-step overhead.
            steps_per_execution=steps,
        )

    def _say_early_stop(self, rows: History) -> None:
        """One line when early stopping ended training, as numpy_dnn's."""
        patience = self.params.early_stopping_patience
        if (patience is None or not rows or len(rows) >= self.params.epochs
                or not math.isfinite(rows[-1]["loss"])):  # TerminateOnNaN: not early stopping
            return
        best = min(rows, key=lambda row: row["val_loss"])
        print(f"{self.name}: early stopping after epoch {len(rows)}: validation loss has not "
              f"improved for {patience} epochs; restored epoch {int(best['epoch'])} "
              f"(val_loss {best['val_loss']:.4f})", file=sys.stderr)

    def _callbacks(self) -> list[keras.callbacks.Callback]:
        callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
        if self.params.early_stopping_patience is not None:
            # Keras restores the best epoch's weights at the end, stopped early or not.
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss",
                    patience=self.params.early_stopping_patience,
                    restore_best_weights=True,
                    verbose=0,  # fit says it in one line
                )
            )
        return callbacks

    def _trained(self) -> keras.Model:
        if self.model is None:
            raise RuntimeError("fit() or load() the model first")
        return self.model

    def predict_proba(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Through the compiled predict function (nnlab/models/keras/inference.py): what
        `model.predict()` gives, without its per-call set-up (45 ms for one image)."""
        model = self._trained()
        if getattr(self, "_predictor_of", None) is not model:
            self._predictor, self._predictor_of = Predictor(model), model
        logits = self._predictor(np.asarray(images, np.uint8))
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
