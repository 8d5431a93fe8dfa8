"""numpy_dnn is the network it claims to be: the same MLP or convnet built in Keras, with
numpy_dnn's weights copied in, gives the same outputs, and the same weights after SGD and
Adam steps.

Keras is the reference implementation here, as torch is for micrograd.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from nnlab.models.numpy import Network, build_mlp, make_optimizer
from nnlab.models.numpy.conv import BatchNorm2D, Conv2D, Flatten, MaxPool2D
from nnlab.models.numpy.layers import BatchNorm, Dense, Layer, LeakyReLU, ReLU, Sigmoid, Tanh

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402  (after the backend is chosen)

pytestmark = pytest.mark.tensorflow

TOLERANCE = 1e-5
N_INPUTS, BATCH = 20, 16


def _keras_twin(network: Network) -> keras.Sequential:
    """The same layers in Keras, with numpy_dnn's current weights copied in."""
    layers: list[keras.layers.Layer] = [keras.Input(shape=(N_INPUTS,))]
    for layer in network.layers:
        if isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.params["W"].shape[1],
                                             use_bias="b" in layer.params))
        elif isinstance(layer, BatchNorm):
            layers.append(keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3))
        elif isinstance(layer, LeakyReLU):
            layers.append(keras.layers.LeakyReLU(negative_slope=layer.slope))
        else:
            activation = {ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid"}[type(layer)]  # type: ignore[index]
            layers.append(keras.layers.Activation(activation))
    model = keras.Sequential(layers)
    for ours, theirs in zip(network.layers, model.layers, strict=True):
        if isinstance(ours, Dense):
            theirs.set_weights(list(ours.params.values()))
        elif isinstance(ours, BatchNorm):
            theirs.set_weights([ours.params["gamma"], ours.params["beta"],
                                ours.state["running_mean"], ours.state["running_var"]])
    return model


def _network(activation: str, n_classes: int = 5, batch_norm: bool = False) -> Network:
    rng = np.random.default_rng(0)
    return build_mlp(N_INPUTS, [16, 12], n_classes, activation, "he", rng, batch_norm=batch_norm)


def _batch(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, N_INPUTS)).astype(np.float32)
    return x, rng.integers(0, n_classes, BATCH).astype(np.int64)


def _assert_same_weights(network: Network, model: keras.Sequential) -> None:
    for ours, theirs in zip(network.layers, model.layers, strict=True):
        ours_arrays = [*ours.params.values(), *ours.state.values()]
        for mine, reference in zip(ours_arrays, theirs.get_weights(), strict=True):
            np.testing.assert_allclose(mine, reference, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    ("activation", "batch_norm"),
    [("relu", False), ("leaky_relu", False), ("tanh", False), ("sigmoid", False),
     ("relu", True)],
)
def test_forward_matches_keras(activation: str, batch_norm: bool) -> None:
    network = _network(activation, batch_norm=batch_norm)
    if batch_norm:  # non-trivial inference statistics
        for layer in network.layers:
            if isinstance(layer, BatchNorm):
                layer.state["running_mean"][...] = 0.3
                layer.state["running_var"][...] = 2.0
    model = _keras_twin(network)
    x, _ = _batch(5)
    logits = np.asarray(model(x, training=False))
    np.testing.assert_allclose(network.logits(x), logits, rtol=0, atol=TOLERANCE)
    softmax = np.asarray(keras.activations.softmax(logits))
    np.testing.assert_allclose(network.predict_proba(x), softmax, rtol=0, atol=TOLERANCE)


def _train_both(
    network: Network, optimizer_name: str, keras_optimizer: keras.optimizers.Optimizer,
    steps: int, n_classes: int, every_step: bool = False, **hyperparameters: float,
) -> keras.Sequential:
    model = _keras_twin(network)
    binary = n_classes == 2
    loss = (keras.losses.BinaryCrossentropy(from_logits=True) if binary
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(optimizer=keras_optimizer, loss=loss, run_eagerly=True)
    x, labels = _batch(n_classes)
    target = labels.astype(np.float32)[:, None] if binary else labels
    optimizer = make_optimizer(optimizer_name, 0.01, **{"momentum": 0.9, **hyperparameters})
    params, grads = network.parameters()
    for _ in range(steps):
        ours, _ = network.loss_and_backward(x, labels)
        optimizer.update(params, grads)
        theirs = model.train_on_batch(x, target)
        assert ours == pytest.approx(float(theirs), abs=TOLERANCE)
        if every_step:
            _assert_same_weights(network, model)
    return model


@pytest.mark.parametrize(
    ("optimizer_name", "steps"), [("sgd", 1), ("momentum", 3), ("nesterov", 3), ("adam", 3)]
)
def test_weights_match_keras_after_training_steps(optimizer_name: str, steps: int) -> None:
    keras_optimizers = {
        "sgd": lambda: keras.optimizers.SGD(0.01),
        "momentum": lambda: keras.optimizers.SGD(0.01, momentum=0.9),
        "nesterov": lambda: keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        "adam": lambda: keras.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
    }
    network = _network("relu")
    model = _train_both(network, optimizer_name, keras_optimizers[optimizer_name](), steps, 5)
    _assert_same_weights(network, model)


# Adagrad and RMSprop add epsilon outside the square root, as the tutorials do; Keras adds it
# inside. With a negligible epsilon both read w -= lr * g / sqrt(accumulator), so the step
# by step comparison checks everything else: the accumulators, their decay and the step.
# tanh keeps every gradient away from zero, where the two placements would differ.
@pytest.mark.parametrize("optimizer_name", ["adagrad", "rmsprop"])
def test_adagrad_and_rmsprop_match_keras_step_by_step(optimizer_name: str) -> None:
    epsilon = 1e-20
    keras_optimizer = {
        "adagrad": keras.optimizers.Adagrad(0.01, initial_accumulator_value=0.0,
                                            epsilon=epsilon),
        "rmsprop": keras.optimizers.RMSprop(0.01, rho=0.999, epsilon=epsilon),
    }[optimizer_name]
    network = _network("tanh")
    _train_both(network, optimizer_name, keras_optimizer, 3, 5, every_step=True,
                epsilon=epsilon)
    assert int(keras_optimizer.iterations.numpy()) == 3


def test_two_class_sigmoid_output_matches_keras_after_adam_steps() -> None:
    network = _network("tanh", n_classes=2)
    assert network.dense_layers[-1].params["W"].shape == (12, 1)
    model = _train_both(network, "adam", keras.optimizers.Adam(0.01), 3, 2)
    _assert_same_weights(network, model)


def test_batch_norm_training_matches_keras_after_adam_steps() -> None:
    """Training-mode batch statistics, gamma/beta updates and the running averages."""
    network = _network("relu", batch_norm=True)
    model = _train_both(network, "adam", keras.optimizers.Adam(0.01), 3, 5)
    _assert_same_weights(network, model)


def test_leaky_relu_has_one_slope_in_both_frameworks() -> None:
    """keras_mlp's leaky_relu is the same function as numpy_dnn's (Keras's own default slope
    is 0.3 for the layer and 0.2 for the activation)."""
    from nnlab.models.keras.builders import _activation

    x = np.linspace(-3, 3, 13, dtype=np.float32).reshape(1, -1)
    expected = LeakyReLU().forward(x)
    got = np.asarray(_activation("leaky_relu")(x))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert expected[0, 0] == pytest.approx(-3 * 0.01)


# -- the convolution layers -----------------------------------------------------------------
IMAGE = (9, 9, 1)


def _convnet(batch_norm: bool) -> Network:
    """conv 3x3 same -> ReLU -> max-pool 2 same -> conv 3x3 stride 2 same -> (BN) -> ReLU ->
    flatten -> dense 5: each padding rule, a stride of 2 and an odd size to pool."""
    rng = np.random.default_rng(2)
    layers: list[Layer] = [
        Conv2D((rng.standard_normal((3, 3, 1, 4)) * 0.5).astype(np.float32),
               (rng.standard_normal(4) * 0.1).astype(np.float32)),
        ReLU(), MaxPool2D(2, "same"),
        Conv2D((rng.standard_normal((3, 3, 4, 6)) * 0.3).astype(np.float32),
               None if batch_norm else np.zeros(6, np.float32), 2, "same"),
        *([BatchNorm2D(6)] if batch_norm else []), ReLU(), Flatten(),
        Dense((rng.standard_normal((54, 5)) * 0.2).astype(np.float32), np.zeros(5, np.float32)),
    ]
    return Network(layers, {"n_classes": 5})


def _keras_convnet(network: Network) -> keras.Sequential:
    twins = {Conv2D: lambda layer: keras.layers.Conv2D(
                 layer.params["W"].shape[3], layer.params["W"].shape[:2], strides=layer.stride,
                 padding=layer.padding, use_bias="b" in layer.params),
             ReLU: lambda layer: keras.layers.Activation("relu"),
             MaxPool2D: lambda layer: keras.layers.MaxPooling2D(layer.size,
                                                                padding=layer.padding),
             BatchNorm2D: lambda layer: keras.layers.BatchNormalization(momentum=0.99,
                                                                       epsilon=1e-3),
             Flatten: lambda layer: keras.layers.Flatten(),
             Dense: lambda layer: keras.layers.Dense(layer.params["W"].shape[1])}
    model = keras.Sequential([keras.Input(shape=IMAGE),
                              *(twins[type(layer)](layer) for layer in network.layers)])
    for ours, theirs in zip(network.layers, model.layers, strict=True):
        if ours.params:
            theirs.set_weights([*ours.params.values(), *ours.state.values()])
    return model


@pytest.mark.parametrize("batch_norm", [False, True])
def test_convnet_logits_match_keras(batch_norm: bool) -> None:
    network = _convnet(batch_norm)
    model = _keras_convnet(network)
    x = np.random.default_rng(3).standard_normal((BATCH, *IMAGE)).astype(np.float32)
    np.testing.assert_allclose(network.logits(x), np.asarray(model(x, training=False)),
                               rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(("optimizer_name", "steps", "batch_norm"),
                         [("sgd", 1, False), ("adam", 3, False), ("adam", 3, True)])
def test_convnet_weights_match_keras_after_training_steps(optimizer_name: str, steps: int,
                                                          batch_norm: bool) -> None:
    network = _convnet(batch_norm)
    model = _keras_convnet(network)
    keras_optimizer = {"sgd": keras.optimizers.SGD(0.01),
                       "adam": keras.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.999,
                                                     epsilon=1e-7)}[optimizer_name]
    model.compile(optimizer=keras_optimizer, run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((BATCH, *IMAGE)).astype(np.float32)
    labels = rng.integers(0, 5, BATCH).astype(np.int64)
    optimizer = make_optimizer(optimizer_name, 0.01, momentum=0.9)
    params, grads = network.parameters()
    for _ in range(steps):
        ours, _ = network.loss_and_backward(x, labels)
        optimizer.update(params, grads)
        assert ours == pytest.approx(float(model.train_on_batch(x, labels)), abs=TOLERANCE)
    _assert_same_weights(network, model)
