"""Mini-batch training loop: shuffling, learning-rate decay, early stopping, history, and
the state a checkpoint needs to go on after any epoch (FitState)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.models.divergence import DivergenceGuard
from nnlab.models.numpy.arrays import to_host
from nnlab.models.numpy.network import Network
from nnlab.models.numpy.optimizers import Optimizer, scheduled_learning_rate


def loss_and_accuracy(
    network: Network, x: NDArray[np.floating], labels: NDArray[np.int64], batch_size: int
) -> tuple[float, float]:
    """Mean loss (without the L2 term) and accuracy over a whole set, in inference mode."""
    total_loss, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        batch_labels = labels[start : start + batch_size]
        logits = network.logits(x[start : start + batch_size])
        total_loss += network.loss.forward(logits, batch_labels) * batch_labels.shape[0]
        correct += int(np.count_nonzero(to_host(network.loss.probs).argmax(axis=1)
                                        == batch_labels))
    return total_loss / x.shape[0], correct / x.shape[0]


@dataclass(frozen=True)
class TrainConfig:
    """How `fit` trains: epochs and batches, the learning-rate schedule, early stopping, and
    what is called after each epoch.

    Args:
        batch_size: None means full-batch gradient descent (the source tutorials' loop).
        learning_rate_decay: None, "inverse_time" or "step", applied per epoch with
            `decay_rate` and `decay_epochs` (see `optimizers.LR_SCHEDULES`).
        early_stopping_patience: stop after this many epochs without a lower validation
            loss, then restore the weights of the best epoch. None trains every epoch.
        on_epoch: called with each epoch's history row once the epoch is checked; it may
            raise to stop training (a sweep's pruner does).
        augment: makes each epoch's training inputs from the original ones with `rng` (e.g.
            `random_shifts`); None trains on the inputs as they are.
        checkpoint: called with a FitState at the end of each epoch, before `on_epoch`: fit
            given that state as `resume` goes on exactly as if it had never stopped.
    """

    epochs: int
    batch_size: int | None = None
    learning_rate_decay: str | None = None
    decay_rate: float = 1.0
    decay_epochs: int = 1
    early_stopping_patience: int | None = None
    model: str = "numpy_dnn"  # the params.yaml key that errors name (numpy_cnn too)
    on_epoch: Callable[[dict[str, float]], None] | None = None
    augment: Callable[[NDArray[np.float32], np.random.Generator], NDArray[np.float32]] | None \
        = None
    checkpoint: Callable[[FitState], None] | None = None


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


@dataclass
class FitState:
    """Where `fit` stands at the end of an epoch: everything it needs to go on bit for bit.

    The generator's state fixes the next epoch's data order, augmentation and dropout masks
    (they all draw from it); the optimizer's slots and step count its next update; the best
    epoch and its weights early stopping; the rows the divergence guard's streak."""

    epoch: int
    rows: list[dict[str, float]]
    best_loss: float
    best_epoch: int
    stopped_early: bool
    rng: dict[str, Any]  # numpy's bit_generator.state
    optimizer: dict[str, float]  # Optimizer.state_scalars()
    weights: dict[str, NDArray[Any]]  # Network.weights(), params and batch-norm state
    best_weights: dict[str, NDArray[Any]]  # empty without early stopping
    slots: dict[str, NDArray[Any]]  # Optimizer.state_arrays()

    def to_checkpoint(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """(plain arrays, JSON-able values): what a checkpoint file holds."""
        arrays = {**{f"weights/{key}": to_host(value) for key, value in self.weights.items()},
                  **{f"best/{key}": to_host(value) for key, value in self.best_weights.items()},
                  **{f"slots/{key}": to_host(value) for key, value in self.slots.items()}}
        meta = {"epoch": self.epoch, "rows": self.rows, "best_loss": self.best_loss,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "rng": self.rng, "optimizer": self.optimizer}
        return arrays, meta

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> FitState:
        def part(prefix: str) -> dict[str, NDArray[Any]]:
            return {key[len(prefix):]: value for key, value in arrays.items()
                    if key.startswith(prefix)}

        return cls(int(meta["epoch"]), list(meta["rows"]), float(meta["best_loss"]),
                   int(meta["best_epoch"]), bool(meta["stopped_early"]), dict(meta["rng"]),
                   dict(meta["optimizer"]), part("weights/"), part("best/"), part("slots/"))


def fit(network: Network, optimizer: Optimizer, train: Data, val: Data, config: TrainConfig,
        rng: np.random.Generator, resume: FitState | None = None) -> FitResult:
    """Train `network` in place on `train`, monitoring `val`; return its FitResult.

    `rng` is the only source of randomness here (shuffling; dropout masks use the same one).
    With early stopping, the network ends with the weights of its best epoch. `resume`, a
    FitState that `config.checkpoint` was given, goes on after its epoch: the network, the
    optimizer and `rng` end as they would have without the stop, bit for bit. Raises
    DivergenceError (nnlab.models.divergence) when the loss blows up or stays far above chance.
    """
    n_samples = train[0].shape[0]
    batch = n_samples if config.batch_size is None else min(config.batch_size, n_samples)
    base_learning_rate = optimizer.learning_rate
    outputs = network.dense_layers[-1].params["W"].shape[1]  # 1: a sigmoid unit, 2 classes
    guard = DivergenceGuard(config.model, max(outputs, 2), base_learning_rate)
    history = FitResult()
    best_loss, best_epoch, first = math.inf, 0, 1
    best_weights: dict[str, NDArray[Any]] = {}
    patience = config.early_stopping_patience
    if resume is not None:
        best_loss, best_epoch, best_weights = _restore(resume, network, optimizer, rng, guard,
                                                       history)
        first = resume.epoch + 1
    # A diverging run overflows before its loss turns NaN: raise one clear error instead of
    # a stream of NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(first, config.epochs + 1):
            if history.stopped_early:  # a checkpoint of the epoch that stopped it
                break
            optimizer.learning_rate = scheduled_learning_rate(
                config.learning_rate_decay, base_learning_rate, epoch - 1, config.decay_rate,
                config.decay_epochs)
            history.rows.append(_epoch(network, optimizer, train, val, batch, epoch, config,
                                       guard, rng))
            loss, accuracy, val_loss = (history.rows[-1][key] for key in
                                        ("loss", "accuracy", "val_loss"))
            improved = val_loss < best_loss
            if improved:
                best_loss, best_epoch = val_loss, epoch
                if patience is not None:
                    best_weights = {key: array.copy() for key, array in network.weights().items()}
            history.stopped_early = (patience is not None and not improved
                                     and epoch - best_epoch >= patience)
            guard.check_epoch(loss, epoch, accuracy,
                              last=epoch == config.epochs or history.stopped_early)
            if config.checkpoint is not None:
                config.checkpoint(FitState(
                    epoch, [dict(row) for row in history.rows], best_loss, best_epoch,
                    history.stopped_early, dict(rng.bit_generator.state),
                    optimizer.state_scalars(), network.weights(), best_weights,
                    optimizer.state_arrays()))
            if config.on_epoch is not None:
                config.on_epoch(dict(history.rows[-1]))
            if history.stopped_early:
                break
    history.best_epoch = len(history)
    if patience is not None and best_epoch:
        network.set_weights(best_weights)
        history.best_epoch = best_epoch
    return history


def _restore(resume: FitState, network: Network, optimizer: Optimizer,
             rng: np.random.Generator, guard: DivergenceGuard, history: FitResult
             ) -> tuple[float, int, dict[str, NDArray[Any]]]:
    """Put `resume` back into the network, the optimizer, `rng`, the guard's streak and
    `history`; (best loss, best epoch, best weights) for early stopping."""
    network.set_weights(resume.weights)
    optimizer.load_state(resume.slots, resume.optimizer)
    rng.bit_generator.state = resume.rng
    history.rows = [dict(row) for row in resume.rows]
    history.stopped_early = resume.stopped_early
    for row in history.rows:
        guard.check_epoch(row["loss"], int(row["epoch"]), row["accuracy"])
    return (resume.best_loss, resume.best_epoch,
            {key: np.array(value) for key, value in resume.best_weights.items()})


def _epoch(network: Network, optimizer: Optimizer, train: Data, val: Data, batch: int,
           epoch: int, config: TrainConfig, guard: DivergenceGuard,
           rng: np.random.Generator) -> dict[str, float]:
    """One pass over `train` (augmented by `config.augment`) in shuffled mini-batches, then
    `val` in inference mode: the epoch's history row."""
    x_train, y_train = train if config.augment is None else (config.augment(train[0], rng),
                                                             train[1])
    n_samples = x_train.shape[0]
    params, grads = network.flat_parameters()
    order = rng.permutation(n_samples)
    loss_sum, correct = 0.0, 0
    for start in range(0, n_samples, batch):
        index = order[start : start + batch]
        labels = y_train[index]
        loss, probs = network.loss_and_backward(x_train[index], labels)
        guard.check_batch(loss, epoch)
        optimizer.update(params, grads)
        loss_sum += loss * labels.shape[0]
        correct += int(np.count_nonzero(probs.argmax(axis=1) == labels))
    val_loss, val_accuracy = loss_and_accuracy(network, val[0], val[1], batch)
    return {"epoch": epoch, "loss": loss_sum / n_samples, "accuracy": correct / n_samples,
            "val_loss": val_loss, "val_accuracy": val_accuracy,
            "learning_rate": optimizer.learning_rate}


def _moved(images: NDArray[np.float32], dy: NDArray[np.int64], dx: NDArray[np.int64]
           ) -> NDArray[np.float32]:
    """images (N, H, W, C), image i moved dy[i] pixels down and dx[i] right, the uncovered
    border zero: one slice copy per offset, not per image."""
    _, height, width, _ = images.shape
    moved = np.zeros_like(images)
    for y in np.unique(dy).tolist():
        for x_ in np.unique(dx[dy == y]).tolist():
            rows = np.flatnonzero((dy == y) & (dx == x_))
            if abs(y) < height and abs(x_) < width:
                moved[rows, max(y, 0):height + min(y, 0), max(x_, 0):width + min(x_, 0)] = \
                    images[rows, max(-y, 0):height - max(y, 0), max(-x_, 0):width - max(x_, 0)]
    return moved


def random_shifts(shape: tuple[int, int, int], fraction: float, subpixel: bool = False
                  ) -> Callable[[NDArray[np.float32], np.random.Generator], NDArray[np.float32]]:
    """An `augment` for flattened (H, W, C) images: each image moved by a random offset, up
    to `fraction` of its height and width in each direction, the uncovered border filled
    with zeros (the background after scaling). A new draw every epoch.

    Whole pixels by default. `subpixel`: offsets drawn uniformly from [-fraction, fraction]
    of the size, fractions of a pixel included, and each pixel interpolated bilinearly from
    the four whole-pixel shifts around it, as Keras's RandomTranslation(fill_mode="constant")
    does."""
    height, width, channels = shape
    reach_y, reach_x = fraction * height, fraction * width

    def shift(x: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
        images = x.reshape(-1, height, width, channels)
        if not subpixel:
            dy = rng.integers(-round(reach_y), round(reach_y) + 1, len(images))
            dx = rng.integers(-round(reach_x), round(reach_x) + 1, len(images))
            return _moved(images, dy, dx).reshape(x.shape)
        fy = rng.uniform(-reach_y, reach_y, len(images))
        fx = rng.uniform(-reach_x, reach_x, len(images))
        y0, x0 = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
        ty = (fy - y0).astype(x.dtype)[:, None, None, None]  # the weight of one pixel further
        tx = (fx - x0).astype(x.dtype)[:, None, None, None]
        out = _moved(images, y0, x0) * ((1 - ty) * (1 - tx))
        out += _moved(images, y0, x0 + 1) * ((1 - ty) * tx)
        out += _moved(images, y0 + 1, x0) * (ty * (1 - tx))
        out += _moved(images, y0 + 1, x0 + 1) * (ty * tx)
        return out.reshape(x.shape)

    return shift
