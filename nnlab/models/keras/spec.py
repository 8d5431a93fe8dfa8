"""What the Keras models are built from, by name, without importing TensorFlow.

The params schema takes its allowed names from here and the builders build from the same
tables, so a name can never be accepted by one and unknown to the other. Activations share
their names and, for leaky_relu, their slope with numpy_dnn (nnlab/core/activations.py), so
that the same params train the same kind of network in both frameworks.
"""

from __future__ import annotations

from nnlab.core.activations import ACTIVATIONS as ACTIVATION_NAMES
from nnlab.core.activations import LEAKY_RELU_SLOPE

# params `backend`: Keras 3's backends this project runs and tests (docs/devices.md).
BACKENDS = ("tensorflow", "jax")
# params `optimizer` -> (keras.optimizers class, its arguments besides the learning rate)
OPTIMIZERS: dict[str, tuple[str, dict[str, float]]] = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "rmsprop": ("RMSprop", {}),
    "adam": ("Adam", {}),
}
# params `init` -> Keras initializer: Xavier is Keras's default, He suits ReLU nets.
INITIALIZERS = {"xavier": "glorot_uniform", "he": "he_normal"}
# params `activation` -> (keras.layers class, its arguments): the numpy_dnn names, same maths.
ACTIVATIONS: dict[str, tuple[str, dict[str, object]]] = {
    "relu": ("Activation", {"activation": "relu"}),
    "leaky_relu": ("LeakyReLU", {"negative_slope": LEAKY_RELU_SLOPE}),
    "tanh": ("Activation", {"activation": "tanh"}),
    "sigmoid": ("Activation", {"activation": "sigmoid"}),
}
if tuple(ACTIVATIONS) != ACTIVATION_NAMES:
    raise ImportError("nnlab/models/keras/spec.py: ACTIVATIONS must list "
                      f"nnlab.core.activations' names {ACTIVATION_NAMES}")
