"""A Keras training's whole state at the end of each epoch, and putting it back, so that a
stopped fit goes on from its last checkpointed epoch (the train stage's checkpoint,
nnlab/training/checkpoints.py).

The state: every model variable (weights, batch-norm statistics, and the seed generators of
dropout and augmentation), every optimizer variable (its step count and moments), early
stopping's counters and best weights, and the history. The data order is the seeded
tf.data pipeline's, skipped ahead by the epochs done (inputs.training_batches). Keras's own
BackupAndRestore keeps the weights, the optimizer and the epoch, but not early stopping's
state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.models.base import Checkpoint, History
from nnlab.models.keras.backend import keras

EARLY_FIELDS = ("wait", "stopped_epoch", "best", "best_epoch")


def history_row(epoch: int, logs: dict[str, Any] | None) -> dict[str, float]:
    """A history row from Keras's epoch logs; `epoch` counts from 0, as Keras's."""
    return {"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}}


class Checkpointing(keras.callbacks.Callback):
    """Saves the state at each epoch's end (after early stopping has counted it, before the
    train stage hears of the epoch), and puts `saved` back when training begins."""

    def __init__(self, checkpoint: Checkpoint, early: keras.callbacks.EarlyStopping | None,
                 rows: History, saved: tuple[dict[str, NDArray[Any]], dict[str, Any]] | None,
                 devices: int, parts: list[dict[str, Any]], where: str) -> None:
        super().__init__()
        self.checkpoint, self.early, self.rows, self.saved = checkpoint, early, rows, saved
        # How many devices split each batch (a resume needs the same), and where each run of
        # epochs trained: [{"device": "2 x cpu", "first": 1, "last": 10}, ...], extended here.
        self.devices, self.parts, self.where = devices, parts, where

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.saved is not None and self.early is not None:  # EarlyStopping reset them
            restore_early_stopping(self.early, *self.saved)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.rows.append(history_row(epoch, logs))
        arrays = {f"model/{index}": np.asarray(variable.numpy())
                  for index, variable in enumerate(self.model.variables)}
        arrays.update({f"optimizer/{index}": np.asarray(variable.numpy())
                       for index, variable in enumerate(self.model.optimizer.variables)})
        add_epoch(self.parts, epoch + 1, self.where)
        meta: dict[str, Any] = {"epoch": epoch + 1, "rows": self.rows,
                                "stopped": bool(self.model.stop_training),
                                "devices": self.devices, "parts": self.parts}
        if self.early is not None:
            meta["early"] = {name: _plain(getattr(self.early, name)) for name in EARLY_FIELDS}
            for index, weights in enumerate(self.early.best_weights or []):
                arrays[f"best/{index}"] = np.asarray(weights)
        self.checkpoint.save(arrays, meta)


def add_epoch(parts: list[dict[str, Any]], epoch: int, where: str) -> None:
    """Count `epoch` as trained on `where`: the last part grows, or a new one starts."""
    if parts and parts[-1]["device"] == where and parts[-1]["last"] == epoch - 1:
        parts[-1]["last"] = epoch
    else:
        parts.append({"device": where, "first": epoch, "last": epoch})


def describe_parts(parts: list[dict[str, Any]]) -> str:
    """"epochs 1-10 on 2 x cpu; epochs 11-30 on 2 x gpu: ..."."""
    return "; ".join(f"epochs {part['first']}-{part['last']} on {part['device']}"
                     for part in parts)


def restore(model: keras.Model, arrays: dict[str, NDArray[Any]]) -> None:
    """Put saved model and optimizer variables back into a compiled `model`."""
    model.optimizer.build(model.trainable_variables)
    for prefix, variables in (("model", model.variables),
                              ("optimizer", model.optimizer.variables)):
        if sum(key.startswith(prefix + "/") for key in arrays) != len(variables):
            raise ValueError(f"the checkpoint's {prefix} variables do not match this model")
        for index, variable in enumerate(variables):
            variable.assign(arrays[f"{prefix}/{index}"])


def restore_early_stopping(early: keras.callbacks.EarlyStopping,
                           arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
    for name, value in meta.get("early", {}).items():
        setattr(early, name, value)
    best = sorted((key for key in arrays if key.startswith("best/")),
                  key=lambda key: int(key.split("/")[1]))
    early.best_weights = [arrays[key] for key in best] or None


def _plain(value: Any) -> Any:
    """A JSON-able copy of an early-stopping counter (NumPy scalars become Python's)."""
    return value.item() if isinstance(value, np.generic) else value
