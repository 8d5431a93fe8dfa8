"""numpy_dnn: a deep network written from scratch in pure NumPy.

    layers.py      Dense, activations, BatchNorm, Dropout: forward caches, backward returns dx
    losses.py      softmax and sigmoid cross-entropy, fused so that backward is (y - t) / N
    optimizers.py  SGD, momentum, Nesterov, Adagrad, RMSprop, Adam; learning-rate schedules
    kernels.py     the update rules as fused loops compiled by numba
    network.py     a stack of layers over two flat buffers (weights, gradients); build_mlp
    training.py    the mini-batch loop: shuffling, decay, early stopping, the divergence guard
    params.py      the `numpy_dnn` section's schema (names from the registries above)
    classifier.py  the ImageClassifier: params in, a saved .npz out

The engine (all but params.py and classifier.py) has no I/O, no yaml, no MLflow and no
TensorFlow: only arrays in, arrays out.
"""

from nnlab.core.errors import DivergenceError
from nnlab.models.numpy_dnn.network import INITS, Network, build_mlp
from nnlab.models.numpy_dnn.optimizers import LR_SCHEDULES, OPTIMIZERS, make_optimizer
from nnlab.models.numpy_dnn.training import (
    FitResult,
    FitState,
    TrainConfig,
    evaluate,
    fit,
    random_shifts,
)

__all__ = [
    "INITS",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "TrainConfig",
    "DivergenceError",
    "FitResult",
    "FitState",
    "Network",
    "build_mlp",
    "evaluate",
    "fit",
    "make_optimizer",
    "random_shifts",
]
