"""Mini-batch training loop with per-epoch history."""

from __future__ import annotations

import math
import sys

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from nnlab.errors import DivergenceError
from nnlab.numpy_dnn.network import Network
from nnlab.numpy_dnn.optimizers import Optimizer


def _evaluate(
    network: Network, x: NDArray[np.floating], labels: NDArray[np.int64], batch_size: int
) -> tuple[float, float]:
    """Mean loss (without the L2 term) and accuracy over a whole set, in batches."""
    total_loss, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        batch_labels = labels[start : start + batch_size]
        logits = network.logits(x[start : start + batch_size])
        total_loss += network.loss.forward(logits, batch_labels) * batch_labels.shape[0]
        correct += int(np.sum(network.loss.probabilities(logits).argmax(axis=1) == batch_labels))
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
    progress: bool | None = None,
) -> list[dict[str, float]]:
    """Train `network` in place; return one history row per epoch.

    Args:
        x_train: (N, D) float inputs. y_train: (N,) int labels. Same for the validation set.
        batch_size: None means full-batch gradient descent.
        rng: the only source of randomness (shuffling).
        progress: show a tqdm bar; None means only when stderr is a terminal.

    Raises:
        DivergenceError: the loss became NaN or inf (names the epoch).
    """
    n_samples = x_train.shape[0]
    batch = n_samples if batch_size is None else min(batch_size, n_samples)
    show = sys.stderr.isatty() if progress is None else progress
    params, grads = network.parameters()
    history: list[dict[str, float]] = []
    # A diverging run overflows before its loss turns NaN: raise one clear error instead of
    # a stream of NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n_samples)
            loss_sum, correct = 0.0, 0
            bar = tqdm(
                range(0, n_samples, batch), desc=f"epoch {epoch}/{epochs}", disable=not show,
                leave=False,
            )
            for start in bar:
                index = order[start : start + batch]
                labels = y_train[index]
                loss, probs = network.loss_and_backward(x_train[index], labels)
                if not math.isfinite(loss):
                    raise DivergenceError(
                        f"numpy_dnn: training loss became {loss} in epoch {epoch}; "
                        f"lower numpy_dnn.learning_rate (now {optimizer.learning_rate:g})"
                    )
                optimizer.update(params, grads)
                loss_sum += loss * labels.shape[0]
                correct += int(np.sum(probs.argmax(axis=1) == labels))
                bar.set_postfix(loss=f"{loss:.4f}")
            val_loss, val_accuracy = _evaluate(network, x_val, y_val, batch)
            history.append(
                {
                    "epoch": epoch,
                    "loss": loss_sum / n_samples,
                    "accuracy": correct / n_samples,
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                }
            )
    return history
