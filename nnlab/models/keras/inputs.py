"""The batches the Keras models read: endless shuffled training batches, and one ordered pass
for validation. On TensorFlow, tf.data pipelines; on any other backend, plain NumPy batches
(a generator and a `keras.utils.PyDataset`), so that TensorFlow is never imported.

Both shuffle indices only, so the images are never copied into a shuffle buffer, whatever
their size, and both give each epoch a new order, the same orders for the same seed. The
orders differ between the two (tf.data's shuffle is not NumPy's), so a model trained on JAX is
not the one TensorFlow trains from the same seed: equal in quality, not in weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnlab.models.keras.backend import BACKEND, keras, tf

EVAL_BATCH = 256  # validation and prediction: no gradients, so bigger batches are cheaper


def steps_per_epoch(rows: int, batch_size: int, full_batches: bool = False) -> int:
    """Batches per epoch: the last one partial, or (`full_batches`) left out, its images
    then being a different few of each epoch's order."""
    return max(rows // batch_size, 1) if full_batches else math.ceil(rows / batch_size)


def training_batches(images: NDArray[np.uint8], labels: NDArray[np.int64], batch_size: int,
                     seed: int, first_epoch: int = 0, full_batches: bool = False,
                     part: tuple[int, int] = (0, 1)) -> Any:
    """Endless shuffled (images, labels) batches: one epoch after another, each in a new
    order (the same orders for the same seed), starting at `first_epoch`: a training that
    goes on after k epochs sees the orders it would have seen. `part`: (process, processes):
    each batch's rows that this process feeds when several train together (every process
    draws the same orders and takes its block of each batch).

    `fit` keeps one iterator over it for the whole run. Given NumPy arrays, Keras builds a
    new input pipeline iterator every epoch, which took about 12 ms here."""
    if BACKEND != "tensorflow":
        return _numpy_batches(images, labels, batch_size, seed, first_epoch, full_batches,
                              part)
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    order = tf.data.Dataset.range(len(labels)).shuffle(len(labels), seed=seed,
                                                      reshuffle_each_iteration=True)
    batches = order.batch(batch_size).repeat()  # (data parallel, with whole batches: JAX only)
    skip = first_epoch * steps_per_epoch(len(labels), batch_size)
    if skip:  # a resumed training: the batches of the epochs done, skipped as indices only
        batches = batches.skip(skip)
    return batches.map(lambda index: (tf.gather(images_t, index), tf.gather(labels_t, index)))


def _numpy_batches(images: NDArray[np.uint8], labels: NDArray[np.int64], batch_size: int,
                   seed: int, first_epoch: int, full_batches: bool, part: tuple[int, int]
                   ) -> Iterator[tuple[NDArray[np.uint8], NDArray[np.int64]]]:
    """Epoch k's order is a permutation drawn from (seed, k): any epoch's order is known
    without drawing the ones before it."""
    steps = steps_per_epoch(len(labels), batch_size, full_batches)
    epoch = first_epoch
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(len(labels))
        for step in range(steps):
            index = np.sort(order[step * batch_size:(step + 1) * batch_size])  # reads in order
            index = index[_rows(len(index), part)]
            yield images[index], labels[index]
        epoch += 1


def _rows(batch: int, part: tuple[int, int]) -> slice:
    """Process `part[0]` of `part[1]`'s rows of a `batch`-row batch: a contiguous block, in
    process order (DataParallel's device mesh lists process 0's devices first)."""
    index, count = part
    size = batch // count
    return slice(index * size, (index + 1) * size)


def evaluation_batches(images: NDArray[np.uint8], labels: NDArray[np.int64],
                       multiple: int = 1, part: tuple[int, int] = (0, 1)) -> Any:
    """One pass over (images, labels) in order. It must end: Keras runs up to
    steps_per_execution (a training epoch's steps) validation steps per call, and would
    otherwise go round the validation set again.

    `multiple`: every batch's rows a multiple of it (the devices a data-parallel fit splits
    each batch over): the last batch is padded with copies of its last image, weighted 0.
    `part`: as training_batches'."""
    if BACKEND == "tensorflow":  # (data parallel, with padded batches: JAX only)
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(EVAL_BATCH)
    return _EvaluationBatches(images, labels, multiple, part)


class _EvaluationBatches(keras.utils.PyDataset):
    """EVAL_BATCH rows at a time, in order; with `multiple` > 1, (images, labels, weights)."""

    def __init__(self, images: NDArray[np.uint8], labels: NDArray[np.int64],
                 multiple: int, part: tuple[int, int]) -> None:
        super().__init__()
        self.images, self.labels, self.multiple, self.part = images, labels, multiple, part

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / EVAL_BATCH)

    def __getitem__(self, index: int) -> tuple[NDArray[Any], ...]:
        part = slice(index * EVAL_BATCH, (index + 1) * EVAL_BATCH)
        images, labels = self.images[part], self.labels[part]
        if self.multiple == 1:
            return images, labels
        pad = -len(labels) % self.multiple
        weights = np.concatenate([np.ones(len(labels), np.float32), np.zeros(pad, np.float32)])
        mine = _rows(len(weights), self.part)
        return (np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])[mine],
                np.concatenate([labels, np.repeat(labels[-1:], pad)])[mine], weights[mine])
