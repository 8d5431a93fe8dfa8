"""The cross-entropy every model reports, computed one way: in training (numpy_dnn, logreg)
and in evaluation, so that history.csv's val_loss and metrics.json's loss agree."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# The probability of the true class is floored at float32's smallest normal number before the
# log, so one sample's loss is at most -ln(1.18e-38) = 87.3 (and never inf).
PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)
MAX_SAMPLE_LOSS = -float(np.log(PROBABILITY_FLOOR))


def cross_entropy(probabilities: NDArray[np.floating], labels: NDArray[np.int64]) -> float:
    """Mean cross-entropy of class probabilities (N, C) against integer labels (N,)."""
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(labels.shape[0]), labels]
    return float(-np.mean(np.log(np.maximum(picked, PROBABILITY_FLOOR))))
