"""A deep network written from scratch in pure NumPy.

No I/O, no yaml, no mlflow and no TensorFlow here: only arrays in, arrays out.
"""

from nnlab.core.errors import DivergenceError
from nnlab.models.numpy_dnn.network import INITS, Network, build_mlp
from nnlab.models.numpy_dnn.optimizers import LR_SCHEDULES, OPTIMIZERS, make_optimizer
from nnlab.models.numpy_dnn.training import FitResult, TrainConfig, evaluate, fit, random_shifts

__all__ = [
    "INITS",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "TrainConfig",
    "DivergenceError",
    "FitResult",
    "Network",
    "build_mlp",
    "evaluate",
    "fit",
    "make_optimizer",
    "random_shifts",
]
