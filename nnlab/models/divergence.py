"""The cross-entropy every model reports, and the one rule that says a training diverged.

The loss is computed one way, in training (numpy_dnn, logreg) and in evaluation, so that
history.csv's val_loss and metrics.json's loss agree.

The divergence rule, one for every model and optimizer:

a model that predicts every class with equal probability (chance level) has a cross-entropy
of ln(K) for K classes. Training has diverged when
- the training loss is NaN or infinite (checked every batch where the loop allows), or
- the epoch's training loss stays above FACTOR x ln(K) for PATIENCE epochs in a row, or is
  still above it when training ends, or
- it went above FACTOR x ln(K) at some epoch and training ended with a training accuracy
  no better than chance (1/K + CHANCE_MARGIN): the weights blew up, then collapsed to a
  constant prediction (Adam at learning_rate 10 on digits: loss 69 in epoch 1, then a flat
  2.8 at 10% accuracy).

A correct model starts near ln(K) and goes down; a too-large learning rate sends the loss
to tens or hundreds (Adam at learning_rate 1e6 gives about 78 on digits) and leaves a model
at chance level, which must never be saved as a success.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from nnlab.core.errors import DivergenceError

# The probability of the true class is floored at float32's smallest normal number before the
# log, so one sample's loss is at most -ln(1.18e-38) = 87.3 (and never inf).
PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)
MAX_SAMPLE_LOSS = -float(np.log(PROBABILITY_FLOOR))


def cross_entropy(probabilities: NDArray[np.floating], labels: NDArray[np.int64]) -> float:
    """Mean cross-entropy of class probabilities (N, C) against integer labels (N,)."""
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(labels.shape[0]), labels]
    return float(-np.mean(np.log(np.maximum(picked, PROBABILITY_FLOOR))))


FACTOR = 4.0
PATIENCE = 3
CHANCE_MARGIN = 0.05


class DivergenceGuard:
    """Feed it each epoch's training loss; it raises DivergenceError by the rule above."""

    def __init__(self, model: str, n_classes: int, learning_rate: float) -> None:
        self.model, self.learning_rate = model, learning_rate
        self.n_classes = max(n_classes, 2)
        self.chance = math.log(self.n_classes)
        self.threshold = FACTOR * self.chance
        self.streak = 0
        self.peak: tuple[float, int] | None = None  # (loss, epoch) of the worst blown-up epoch

    def _fail(self, why: str, epoch: int) -> DivergenceError:
        return DivergenceError(
            f"{self.model}: training loss {why} in epoch {epoch}: it diverged; lower "
            f"{self.model}.learning_rate (now {self.learning_rate:g}), e.g. to "
            f"{self.learning_rate / 10:g}"
        )

    def check_batch(self, loss: float, epoch: int) -> None:
        if not math.isfinite(loss):
            raise self._fail(f"became {loss}", epoch)

    def check_epoch(
        self, loss: float, epoch: int, accuracy: float | None = None, last: bool = False
    ) -> None:
        """`loss` and `accuracy`: the epoch's training values; `last`: training ends here."""
        self.check_batch(loss, epoch)
        self.streak = self.streak + 1 if loss > self.threshold else 0
        if loss > self.threshold and (self.peak is None or loss > self.peak[0]):
            self.peak = (loss, epoch)
        if self.streak >= PATIENCE or (last and self.streak):
            raise self._fail(
                f"was {loss:.4g}, above {self.threshold:.3g} ({FACTOR:g} x the chance-level "
                f"{self.chance:.3g}) for {self.streak} epoch(s)", epoch)
        chance_accuracy = 1 / self.n_classes + CHANCE_MARGIN
        if last and self.peak and accuracy is not None and accuracy <= chance_accuracy:
            raise self._fail(
                f"blew up to {self.peak[0]:.4g} in epoch {self.peak[1]} and training ended at "
                f"chance level (training accuracy {accuracy:.3f})", epoch)
