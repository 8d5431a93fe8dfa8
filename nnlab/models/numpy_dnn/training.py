"""Mini-batch training loop: shuffling, learning-rate decay, early stopping, history."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from nnlab.core.loss import DivergenceGuard
from nnlab.models.numpy_dnn.network import Network
from nnlab.models.numpy_dnn.optimizers import Optimizer, scheduled_learning_rate


def evaluate(
    network: Network, x: NDArray[np.floating], labels: NDArray[np.int64], batch_size: int
) -> tuple[float, float]:
    """Mean loss (without the L2 term) and accuracy over a whole set, in inference mode."""
    total_loss, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        batch_labels = labels[start : start + batch_size]
        logits = network.logits(x[start : start + batch_size])
        total_loss += network.loss.forward(logits, batch_labels) * batch_labels.shape[0]
        correct += int(np.count_nonzero(network.loss.probs.argmax(axis=1) == batch_labels))
    return total_loss / x.shape[0], correct / x.shape[0]


@dataclass(frozen=True)
class TrainConfig:
    """How `fit` trains: epochs and batches, the learning-rate schedule, early stopping and
    the progress bar.

    Args:
        batch_size: None means full-batch gradient descent (the source tutorials' loop).
        learning_rate_decay: None, "inverse_time" or "step", applied per epoch with
            `decay_rate` and `decay_epochs` (see `optimizers.LR_SCHEDULES`).
        early_stopping_patience: stop after this many epochs without a lower validation
            loss, then restore the weights of the best epoch. None trains every epoch.
        progress: show a tqdm bar per epoch; None means only when stderr is a terminal.
        on_epoch: called with each epoch's history row once the epoch is checked; it may
            raise to stop training (a sweep's pruner does).
        augment: makes each epoch's training inputs from the original ones with `rng` (e.g.
            `random_shifts`); None trains on the inputs as they are.
    """

    epochs: int
    batch_size: int | None = None
    learning_rate_decay: str | None = None
    decay_rate: float = 1.0
    decay_epochs: int = 1
    early_stopping_patience: int | None = None
    progress: bool | None = None
    model: str = "numpy_dnn"  # the params.yaml key that errors name (numpy_cnn too)
    on_epoch: Callable[[dict[str, float]], None] | None = None
    augment: Callable[[NDArray[np.float32], np.random.Generator], NDArray[np.float32]] | None \
        = None


@dataclass
class FitResult:
    """One row per epoch run (epoch, loss, accuracy, val_loss, val_accuracy, learning_rate),
    and the epoch whose weights the network holds at the end."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False  # fewer epochs than configured: early stopping

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, float]:
        return self.rows[index]

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.rows)


Data = tuple[NDArray[np.floating], NDArray[np.int64]]  # (N, D) float inputs, (N,) int labels


def fit(network: Network, optimizer: Optimizer, train: Data, val: Data, config: TrainConfig,
        rng: np.random.Generator) -> FitResult:
    """Train `network` in place on `train`, monitoring `val`; return its FitResult.

    `rng` is the only source of randomness here (shuffling; dropout masks use the same one).
    With early stopping, the network ends with the weights of its best epoch.

    Raises:
        DivergenceError: the loss became NaN or inf, or stayed far above chance level
            (nnlab.core.loss; names the epoch and the fix).
    """
    n_samples = train[0].shape[0]
    batch = n_samples if config.batch_size is None else min(config.batch_size, n_samples)
    base_learning_rate = optimizer.learning_rate
    outputs = network.dense_layers[-1].params["W"].shape[1]  # 1: a sigmoid unit, 2 classes
    guard = DivergenceGuard(config.model, max(outputs, 2), base_learning_rate)
    history = FitResult()
    best_loss, best_epoch, best_weights = math.inf, 0, {}
    patience = config.early_stopping_patience
    # A diverging run overflows before its loss turns NaN: raise one clear error instead of
    # a stream of NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, config.epochs + 1):
            optimizer.learning_rate = scheduled_learning_rate(
                config.learning_rate_decay, base_learning_rate, epoch - 1, config.decay_rate,
                config.decay_epochs)
            inputs = train if config.augment is None else (config.augment(train[0], rng),
                                                           train[1])
            loss, accuracy = _epoch(network, optimizer, inputs, batch, epoch, config, guard,
                                    rng)
            val_loss, val_accuracy = evaluate(network, val[0], val[1], batch)
            history.rows.append({"epoch": epoch, "loss": loss, "accuracy": accuracy,
                                 "val_loss": val_loss, "val_accuracy": val_accuracy,
                                 "learning_rate": optimizer.learning_rate})
            improved = val_loss < best_loss
            if improved:
                best_loss, best_epoch = val_loss, epoch
                if patience is not None:
                    best_weights = {key: array.copy() for key, array in network.weights().items()}
            history.stopped_early = (patience is not None and not improved
                                     and epoch - best_epoch >= patience)
            guard.check_epoch(loss, epoch, accuracy,
                              last=epoch == config.epochs or history.stopped_early)
            if config.on_epoch is not None:
                config.on_epoch(dict(history.rows[-1]))
            if history.stopped_early:
                break
    history.best_epoch = len(history)
    if patience is not None and best_epoch:
        network.set_weights(best_weights)
        history.best_epoch = best_epoch
    return history


def _epoch(network: Network, optimizer: Optimizer, train: Data, batch: int, epoch: int,
           config: TrainConfig, guard: DivergenceGuard,
           rng: np.random.Generator) -> tuple[float, float]:
    """One pass over `train` in shuffled mini-batches: (mean loss, accuracy) while training."""
    x_train, y_train = train
    n_samples = x_train.shape[0]
    params, grads = network.flat_parameters()
    show = sys.stderr.isatty() if config.progress is None else config.progress
    order = rng.permutation(n_samples)
    loss_sum, correct = 0.0, 0
    bar = tqdm(range(0, n_samples, batch), desc=f"epoch {epoch}/{config.epochs}",
               disable=not show, leave=False, mininterval=0.5)
    for start in bar:
        index = order[start : start + batch]
        labels = y_train[index]
        loss, probs = network.loss_and_backward(x_train[index], labels)
        guard.check_batch(loss, epoch)
        optimizer.update(params, grads)
        loss_sum += loss * labels.shape[0]
        correct += int(np.count_nonzero(probs.argmax(axis=1) == labels))
        if show:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    return loss_sum / n_samples, correct / n_samples


def random_shifts(shape: tuple[int, int, int], fraction: float
                  ) -> Callable[[NDArray[np.float32], np.random.Generator], NDArray[np.float32]]:
    """An `augment` for flattened (H, W, C) images: each image moved by a random whole number
    of pixels, up to `fraction` of its height and width in each direction, the uncovered
    border filled with zeros (the background after scaling). A new draw every epoch."""
    height, width, channels = shape
    reach_y, reach_x = round(fraction * height), round(fraction * width)

    def shift(x: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
        images = x.reshape(-1, height, width, channels)
        moved = np.zeros_like(images)
        dy = rng.integers(-reach_y, reach_y + 1, len(images))
        dx = rng.integers(-reach_x, reach_x + 1, len(images))
        for y in range(-reach_y, reach_y + 1):  # one slice copy per offset, not per image
            for x_ in range(-reach_x, reach_x + 1):
                rows = np.flatnonzero((dy == y) & (dx == x_))
                if rows.size:
                    moved[rows, max(y, 0):height + min(y, 0), max(x_, 0):width + min(x_, 0)] = \
                        images[rows, max(-y, 0):height - max(y, 0),
                               max(-x_, 0):width - max(x_, 0)]
        return moved.reshape(x.shape)

    return shift
