"""keras_mlp and cnn as ImageClassifiers: fit with determinism, early stopping and the
divergence guard; predict probabilities; save and load .keras files in safe mode."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.core import quiet
from nnlab.core.files import reading
from nnlab.models.base import (
    RESTORE_MODEL,
    Checkpoint,
    EpochHook,
    History,
    ImageClassifier,
    Split,
    trained_file,
)
from nnlab.models.divergence import DivergenceGuard
from nnlab.models.keras import cluster
from nnlab.models.keras.backend import (
    BACKEND,
    check_backend,
    describe,
    device_kind,
    keras,
)
from nnlab.models.keras.builders import build_cnn, build_mlp, loss, optimizer, with_probabilities
from nnlab.models.keras.inference import Predictor
from nnlab.models.keras.inputs import evaluation_batches, steps_per_epoch, training_batches
from nnlab.models.keras.placement import (
    configure_determinism,
    data_parallel,
    devices,
    precision,
)
from nnlab.models.keras.section import CnnParams, KerasMlpParams
from nnlab.models.keras.training_state import (
    Checkpointing,
    add_epoch,
    describe_parts,
    history_row,
    restore,
    restore_early_stopping,
)

MODEL_FILE = "model.keras"


class _GuardCallback(keras.callbacks.Callback):
    """Stops a diverging fit as soon as nnlab.models.divergence's rule says so, then hands the
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

    def __init__(self, params: KerasMlpParams | CnnParams, seed: int, process: int = 0
                 ) -> None:
        super().__init__(params, seed)
        self.model: keras.Model | None = None
        check_backend(params.backend, self.name)
        # `process` of params.processes: several train together (models/keras/cluster.py)
        self.share = (process, params.processes)
        if params.processes > 1:
            cluster.start(self.name, params, process)
        self.device = device_kind(params.device, self.name)
        # one; with data_parallel (JAX) every local device of the kind; with several
        # processes, every device of the kind of every process
        self.devices = devices(self.device, params.data_parallel or params.processes > 1)

    def runtime(self) -> dict[str, str]:
        where = describe(self.device, len(self.devices))
        if self.share[1] == 1:
            return {"backend": BACKEND, "device": where}
        return {"backend": BACKEND, "device": f"{where} in {self.share[1]} processes",
                "processes": str(self.share[1])}

    def trained_on(self) -> str:
        parts = getattr(self, "parts", None)
        return describe_parts(parts) if parts else super().trained_on()

    def build(self, input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
        raise NotImplementedError

    def fit(self, train: Split, val: Split, n_classes: int, on_epoch: EpochHook | None = None,
            checkpoint: Checkpoint | None = None) -> History:
        configure_determinism(self.seed)
        self.epochs_done = 0
        with data_parallel(self.name, self.params, self.devices):
            if self.share[1] == 1:
                return self._fit(train, val, n_classes, on_epoch, checkpoint)
            try:
                with quiet.filtered(1):  # JAX's collectives say they connected, on stdout
                    rows = self._fit(train, val, n_classes, on_epoch, checkpoint)
            except BaseException as error:
                raise cluster.stopped(self.name, self.epochs_done, error) from None
        # Trained: a copy on this process's devices alone, then every process leaves JAX's
        # runtime together; process 0 saves and logs alone.
        with precision(self.params.mixed_precision):
            local = self.build(tuple(train[0].shape[1:]), n_classes)
        self.model = cluster.leave(self._trained(), local)
        return rows

    def _fit(self, train: Split, val: Split, n_classes: int, on_epoch: EpochHook | None,
             checkpoint: Checkpoint | None) -> History:
        images, labels = train
        with precision(self.params.mixed_precision):
            self.model = self.build(tuple(images.shape[1:]), n_classes)
        split = len(self.devices)  # every batch's rows a multiple of it: JAX shards evenly
        steps = steps_per_epoch(len(labels), self.params.batch_size, full_batches=split > 1)
        self._compile(n_classes, steps, weighted=split > 1)
        guard = DivergenceGuard(self.name, n_classes, self.params.learning_rate)
        saved = self._resumable(checkpoint, split)
        self.parts: list[dict[str, Any]] = [dict(part) for part in saved[1].get("parts", [])
                                            ] if saved else []
        rows: History = [dict(row) for row in saved[1]["rows"]] if saved else []
        for row in rows:  # the guard's streak, as it was
            guard.check_epoch(row["loss"], int(row["epoch"]), row.get("accuracy"))
        callbacks = self._callbacks()
        early = next((callback for callback in callbacks
                      if isinstance(callback, keras.callbacks.EarlyStopping)), None)
        where = self.runtime()["device"]
        if checkpoint is not None:
            callbacks.append(Checkpointing(checkpoint, early, rows, saved, split, self.parts,
                                           where))
        if saved:
            restore(self.model, saved[0])
        done = self.epochs_done = len(rows)
        if saved and (saved[1]["stopped"] or done >= self.params.epochs):
            if early is not None:  # as EarlyStopping leaves a finished fit: its best epoch
                restore_early_stopping(early, *saved)
                if early.best_weights is not None:
                    self.model.set_weights(early.best_weights)
        else:
            result = self.model.fit(
                training_batches(images, labels, self.params.batch_size, self.seed,
                                 first_epoch=done, full_batches=split > 1, part=self.share),
                steps_per_epoch=steps,
                shuffle=False,  # the pipeline shuffles, with the seed
                validation_data=evaluation_batches(*val, multiple=split, part=self.share),
                epochs=self.params.epochs,
                initial_epoch=done,
                verbose=0,  # the train stage shows the epochs (nnlab/models/progress.py)
                callbacks=[*callbacks, _GuardCallback(guard, self._heard(on_epoch))],
            )
            rows = rows[:done] + [history_row(done + index, {
                key: values[index] for key, values in result.history.items()})
                for index in range(len(result.history["loss"]))]
            if checkpoint is None:  # else Checkpointing counted each epoch
                for epoch in range(done + 1, len(rows) + 1):
                    add_epoch(self.parts, epoch, where)
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

    def _heard(self, on_epoch: EpochHook | None) -> EpochHook:
        """`on_epoch`, counting the epochs done first (how far a stopped fit came)."""
        def heard(row: dict[str, float]) -> None:
            self.epochs_done = int(row["epoch"])
            if on_epoch is not None:
                on_epoch(row)
        return heard

    def _resumable(self, checkpoint: Checkpoint | None, split: int
                   ) -> tuple[dict[str, NDArray[Any]], dict[str, Any]] | None:
        """The checkpoint's state, if resuming from it can end where an unstopped run does:
        made with each batch split over as many devices. Otherwise None, and one line why
        (the batches would split another way, and the losses differ from the next epoch)."""
        saved = checkpoint.saved() if checkpoint is not None else None
        if saved and int(saved[1].get("devices", 1)) != split:
            print(f"{self.name}: training from scratch: the checkpoint was made with each batch "
                  f"split over {saved[1].get('devices', 1)} device(s), and this run has "
                  f"{split}; resuming would not give the result of an unstopped run",
                  file=sys.stderr)
            return None
        return saved

    def _compile(self, n_classes: int, steps: int, weighted: bool = False) -> None:
        accuracy = (
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)  # on logits
            if n_classes == 2
            else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        )
        self._trained().compile(
            optimizer=optimizer(self.params.optimizer, self.params.learning_rate),
            loss=loss(n_classes, weighted),
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
        ops = keras.ops  # tf.math.sigmoid and tf.nn.softmax on TensorFlow
        if logits.shape[1] == 1:  # one sigmoid unit -> (N, 2) like softmax
            p = ops.convert_to_numpy(ops.sigmoid(logits[:, 0]))
            return np.stack([1 - p, p], axis=1).astype(np.float32)
        return ops.convert_to_numpy(ops.softmax(logits, axis=1)).astype(np.float32)

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
        with reading(path, f"the {cls.name} model", RESTORE_MODEL):
            model = keras.models.load_model(path, safe_mode=True, compile=False)
        # the backend's own device: the one the process computes on
        return cls.restored(model=model, device="cpu", devices=devices("cpu", False),
                            share=(0, 1))


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
