"""Mini-batch training loop: shuffling, learning-rate decay, early stopping, history."""

from __future__ import annotations

import math
import sys

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from nnlab.divergence import DivergenceGuard
from nnlab.numpy_dnn.network import Network
from nnlab.numpy_dnn.optimizers import Optimizer, scheduled_learning_rate


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


def fit(
    network: Network,
    optimizer: Optimizer,
    x_train: NDArray[np.floating],
    y_train: NDArray[np.int64],
    x_val: NDArray[np.floating],
    y_val: NDArray[np.int64],
    epochs: int,
    batch_size: int | None,
    rng: np.random.Generator,
    learning_rate_decay: str | None = None,
    decay_rate: float = 1.0,
    decay_epochs: int = 1,
    early_stopping_patience: int | None = None,
    progress: bool | None = None,
) -> list[dict[str, float]]:
    """Train `network` in place; return one history row per epoch run.

    Args:
        x_train: (N, D) float inputs. y_train: (N,) int labels. Same for the validation set.
        batch_size: None means full-batch gradient descent (the seeds' `num_iterations` loop).
        rng: the only source of randomness here (shuffling; dropout masks use the same one).
        learning_rate_decay: None, "inverse_time" or "step", applied per epoch with
            `decay_rate` and `decay_epochs` (see `optimizers.LR_SCHEDULES`).
        early_stopping_patience: stop after this many epochs without a lower validation
            loss, then restore the weights of the best epoch. None trains every epoch.
        progress: show a tqdm bar per epoch; None means only when stderr is a terminal.

    Raises:
        DivergenceError: the loss became NaN or inf, or stayed far above chance level
            (nnlab.divergence; names the epoch and the fix).
    """
    n_samples = x_train.shape[0]
    batch = n_samples if batch_size is None else min(batch_size, n_samples)
    show = sys.stderr.isatty() if progress is None else progress
    params, grads = network.parameters()
    base_learning_rate = optimizer.learning_rate
    history: list[dict[str, float]] = []
    best_loss, best_epoch = math.inf, 0
    best_weights: dict[str, NDArray[np.floating]] = {}
    outputs = network.dense_layers[-1].params["W"].shape[1]  # 1: a sigmoid unit, 2 classes
    guard = DivergenceGuard("numpy_dnn", max(outputs, 2), base_learning_rate)
    # A diverging run overflows before its loss turns NaN: raise one clear error instead of
    # a stream of NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            optimizer.learning_rate = scheduled_learning_rate(
                learning_rate_decay, base_learning_rate, epoch - 1, decay_rate, decay_epochs
            )
            order = rng.permutation(n_samples)
            loss_sum, correct = 0.0, 0
            bar = tqdm(
                range(0, n_samples, batch), desc=f"epoch {epoch}/{epochs}", disable=not show,
                leave=False, mininterval=0.5,
            )
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
            val_loss, val_accuracy = evaluate(network, x_val, y_val, batch)
            history.append(
                {
                    "epoch": epoch,
                    "loss": loss_sum / n_samples,
                    "accuracy": correct / n_samples,
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                    "learning_rate": optimizer.learning_rate,
                }
            )
            stop = False
            if early_stopping_patience is not None:
                if val_loss < best_loss:
                    best_loss, best_epoch = val_loss, epoch
                    best_weights = {key: array.copy()
                                    for key, array in network.weights().items()}
                else:
                    stop = epoch - best_epoch >= early_stopping_patience
            guard.check_epoch(loss_sum / n_samples, epoch, correct / n_samples,
                              last=epoch == epochs or stop)
            if stop:
                break
    if early_stopping_patience is not None and best_epoch:
        network.set_weights(best_weights)
        if len(history) < epochs:
            print(
                f"numpy_dnn: early stopping after epoch {len(history)}: validation loss has "
                f"not improved for {early_stopping_patience} epochs; restored epoch "
                f"{best_epoch} (val_loss {best_loss:.4f})",
                file=sys.stderr,
            )
    return history
