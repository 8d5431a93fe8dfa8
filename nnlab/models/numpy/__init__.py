"""numpy_dnn and numpy_cnn: deep networks written from scratch in pure NumPy.

    layers.py      Dense, activations, BatchNorm, Dropout: forward caches, backward returns dx
    conv.py        Conv2D (im2col + one GEMM), MaxPool2D, Flatten, BatchNorm2D
    losses.py      softmax and sigmoid cross-entropy, fused so that backward is (y - t) / N
    optimizers.py  SGD, momentum, Nesterov, Adagrad, RMSprop, Adam; learning-rate schedules
    update_rules.py  each optimizer's rule once: slots, kernel arguments, NumPy reference
    kernels.py     the update rules, max-pooling and col2im as loops compiled by numba
    kernel_cache.py  where numba keeps them: the user's cache, shared by every copy
    array_kernels.py  the same as whole-array expressions, for a GPU (CuPy)
    arrays.py      where the engine computes: `np` is NumPy, or CuPy on a GPU (`device`)
    network.py     a stack of layers over two flat buffers (weights, gradients); build_mlp
    convnet.py     the convnet builder (build_cnn), the source tutorials' DeepConvNet included
    loop.py        the mini-batch loop: shuffling, decay, early stopping, the divergence guard
    section.py     the `numpy_dnn` and `numpy_cnn` sections' schemas (names from the
                   registries above)
    classifier.py  the ImageClassifiers: params in, a saved .npz out

The engine (all but section.py and classifier.py) has no I/O, no yaml, no MLflow and no
TensorFlow: only arrays in, arrays out. Its files take `np` from arrays.py, so the same code
runs on NumPy or, with `device: gpu` (or `auto` where a GPU is usable), on CuPy.
"""

from nnlab.core.errors import DivergenceError
from nnlab.models.numpy.loop import (
    FitResult,
    FitState,
    TrainConfig,
    fit,
    loss_and_accuracy,
    random_shifts,
)
from nnlab.models.numpy.network import INITS, Network, build_mlp
from nnlab.models.numpy.optimizers import LR_SCHEDULES, OPTIMIZERS, make_optimizer

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
    "loss_and_accuracy",
    "fit",
    "make_optimizer",
    "random_shifts",
]
