"""Output losses, fused with their output activation so that backward is `(y - t) / N`.

`forward` also keeps the class probabilities (N, n_classes), so the training loop can count
correct predictions without a second softmax.
"""

from __future__ import annotations

from numpy.typing import NDArray

from nnlab.models.divergence import MAX_SAMPLE_LOSS, cross_entropy
from nnlab.models.numpy.arrays import np, to_host  # NumPy or CuPy (arrays.py)
from nnlab.models.numpy.layers import Array, sigmoid


class SoftmaxCrossEntropy:
    """Softmax over C logits + categorical cross-entropy, for C > 2 classes."""

    def probabilities(self, logits: Array) -> Array:
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))  # shift: exp never overflows
        exp /= exp.sum(axis=1, keepdims=True)
        return exp  # (N, C)

    def forward(self, logits: Array, labels: NDArray[np.int64]) -> float:
        self.probs = self.probabilities(logits)
        self._labels = np.asarray(labels)  # where the logits are (a GPU's copy, or these)
        return cross_entropy(to_host(self.probs), to_host(labels))

    def backward(self) -> Array:
        grad = self.probs.copy()
        grad[np.arange(self._labels.shape[0]), self._labels] -= 1
        grad /= self._labels.shape[0]
        return grad  # (N, C)


class SigmoidBinaryCrossEntropy:
    """One sigmoid unit + binary cross-entropy, for 2 classes (logits shaped (N, 1))."""

    def probabilities(self, logits: Array) -> Array:
        p = sigmoid(logits[:, 0])
        return np.stack([1 - p, p], axis=1)  # (N, 2), like softmax output

    def forward(self, logits: Array, labels: NDArray[np.int64]) -> float:
        z = logits[:, 0]  # (N,)
        self._p = sigmoid(z)
        self.probs = np.stack([1 - self._p, self._p], axis=1)
        self._labels = np.asarray(labels).astype(logits.dtype)
        # log(1 + exp(-|z|)) + max(z, 0) - z*t is BCE written so it never overflows.
        loss = np.logaddexp(0, -np.abs(z)) + np.maximum(z, 0) - z * self._labels
        return float(np.mean(np.minimum(loss, MAX_SAMPLE_LOSS)))  # as cross_entropy()

    def backward(self) -> Array:
        return ((self._p - self._labels) / self._labels.shape[0])[:, np.newaxis]  # (N, 1)


Loss = SoftmaxCrossEntropy | SigmoidBinaryCrossEntropy
