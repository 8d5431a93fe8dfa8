"""The tf.data pipelines the Keras models read: endless shuffled training batches, and one
ordered pass for validation and prediction."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from nnlab.models.keras.backend import tf

EVAL_BATCH = 256  # validation and prediction: no gradients, so bigger batches are cheaper


def training_batches(images: NDArray[np.uint8], labels: NDArray[np.int64], batch_size: int,
                     seed: int, skip: int = 0) -> tf.data.Dataset:
    """An endless tf.data pipeline of shuffled (images, labels) batches: one epoch after
    another, each in a new order (the same orders for the same seed).

    `fit` keeps one iterator over it for the whole run. Given NumPy arrays, Keras builds a
    new input pipeline iterator every epoch, which took about 12 ms here. Only indices are
    shuffled, so the images are never copied into a shuffle buffer, whatever their size.
    `skip` batches are left out first: a training that goes on after k epochs skips k epochs'
    batches, and sees the orders it would have seen."""
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    order = tf.data.Dataset.range(len(labels)).shuffle(len(labels), seed=seed,
                                                      reshuffle_each_iteration=True)
    batches = order.batch(batch_size).repeat()
    if skip:  # a resumed training: the batches of the epochs done, skipped as indices only
        batches = batches.skip(skip)
    return batches.map(lambda index: (tf.gather(images_t, index), tf.gather(labels_t, index)))


def evaluation_batches(images: NDArray[np.uint8], labels: NDArray[np.int64]) -> tf.data.Dataset:
    """One pass over (images, labels) in order. It must end: Keras runs up to
    steps_per_execution (a training epoch's steps) validation steps per call, and would
    otherwise go round the validation set again."""
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(EVAL_BATCH)
