"""A deep network written from scratch in pure NumPy.

No I/O, no yaml, no mlflow and no TensorFlow here: only arrays in, arrays out.
"""

from nnlab.numpy_dnn.network import Network, build_mlp
from nnlab.numpy_dnn.optimizers import OPTIMIZERS, make_optimizer
from nnlab.numpy_dnn.training import DivergenceError, fit

__all__ = ["OPTIMIZERS", "DivergenceError", "Network", "build_mlp", "fit", "make_optimizer"]
