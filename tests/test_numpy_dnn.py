"""The from-scratch network: gradients, optimizers, learning, saving, divergence."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.errors import DivergenceError
from nnlab.numpy_dnn import Network, build_mlp, fit, make_optimizer
from nnlab.numpy_dnn.optimizers import SGD, Adam, Momentum


def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + eps
        plus = f()
        x[index] = old - eps
        minus = f()
        x[index] = old
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_gradients_match_central_differences(activation: str, n_classes: int, l2: float) -> None:
    rng = np.random.default_rng(0)
    network = build_mlp(5, [7, 6], n_classes, activation, "xavier", rng, l2=l2, dtype=np.float64)
    x = rng.standard_normal((11, 5))
    labels = rng.integers(0, n_classes, 11).astype(np.int64)
    network.loss_and_backward(x, labels)
    params, grads = network.parameters()
    analytic = {key: grad.copy() for key, grad in grads.items()}
    for key, param in params.items():
        numeric = _numeric_grad(lambda: network.loss_and_backward(x, labels)[0], param)
        assert _relative_error(analytic[key], numeric) < 1e-6, key


def test_sgd_momentum_adam_one_step_by_hand() -> None:
    # f(w) = 0.5 * w^2, so the gradient is w itself.
    w = np.array([2.0, -1.0])
    SGD(0.1).update({"w": w}, {"w": w.copy()})
    np.testing.assert_allclose(w, [1.8, -0.9])

    w = np.array([2.0])
    momentum = Momentum(0.1, momentum=0.9)
    momentum.update({"w": w}, {"w": w.copy()})  # v = -0.2, w = 1.8
    momentum.update({"w": w}, {"w": w.copy()})  # v = 0.9*-0.2 - 0.18 = -0.36
    np.testing.assert_allclose(w, [1.44])

    w = np.array([2.0])
    adam = Adam(0.1, beta1=0.9, beta2=0.999, epsilon=1e-8)
    adam.update({"w": w}, {"w": w.copy()})
    # Bias-corrected m_hat = g and v_hat = g^2, so the first step is lr * g / (|g| + eps').
    np.testing.assert_allclose(w, [1.9], rtol=1e-8)
    w1 = w[0]
    adam.update({"w": w}, {"w": w.copy()})
    m = 0.9 * (0.1 * 2.0) + 0.1 * w1
    v = 0.999 * (0.001 * 2.0**2) + 0.001 * w1**2
    # Keras's form: bias corrections folded into the step size, epsilon added to sqrt(v).
    step = 0.1 * np.sqrt(1 - 0.999**2) / (1 - 0.9**2) * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(w, [w1 - step], rtol=1e-12)
    assert adam.step == 2


def test_unknown_optimizer_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; choose one of: sgd"):
        make_optimizer("lbfgs", 0.1)


def _blobs(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n).astype(np.int64)
    x = rng.standard_normal((n, 10)).astype(np.float32)
    return x, labels


def test_overfits_64_samples_to_full_training_accuracy() -> None:
    x, labels = _blobs(64, 3)
    rng = np.random.default_rng(1)
    network = build_mlp(10, [64], 3, "relu", "he", rng)
    history = fit(network, make_optimizer("adam", 0.01), x, labels, x, labels,
                  epochs=200, batch_size=None, rng=rng)
    assert history[-1]["val_accuracy"] == 1.0


def test_zeros_init_keeps_hidden_units_identical() -> None:
    x, labels = _blobs(64, 3)
    rng = np.random.default_rng(1)
    network = build_mlp(10, [8, 8], 3, "relu", "zeros", rng)
    fit(network, make_optimizer("adam", 0.01), x, labels, x, labels,
        epochs=5, batch_size=16, rng=rng)
    for dense in network.dense_layers[:-1]:
        W = dense.params["W"]
        assert np.all(W == W[:, :1]), "zero init must leave every hidden unit identical"


def test_same_seed_gives_bit_identical_weights() -> None:
    x, labels = _blobs(100, 4)

    def train() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(7)
        network = build_mlp(10, [16], 4, "relu", "he", rng)
        fit(network, make_optimizer("adam", 0.01), x, labels, x, labels,
            epochs=3, batch_size=16, rng=rng)
        return network.to_arrays()

    first, second = train(), train()
    for key in first:
        if key != "architecture":
            assert np.array_equal(first[key], second[key]), key


def test_divergence_names_epoch_and_fix() -> None:
    x, labels = _blobs(64, 3)
    x *= 1e30
    rng = np.random.default_rng(0)
    network = build_mlp(10, [8], 3, "relu", "he", rng)
    expected = r"in epoch \d+; lower numpy_dnn\.learning_rate \(now 10\)"
    with pytest.raises(DivergenceError, match=expected):
        fit(network, make_optimizer("sgd", 10.0), x, labels, x, labels,
            epochs=3, batch_size=None, rng=rng)


def test_arrays_round_trip_and_shape_check() -> None:
    rng = np.random.default_rng(0)
    network = build_mlp(10, [16, 8], 3, "tanh", "he", rng)
    arrays = network.to_arrays()
    restored = Network.from_arrays(arrays)
    x = rng.standard_normal((5, 10)).astype(np.float32)
    np.testing.assert_array_equal(network.predict_proba(x), restored.predict_proba(x))
    arrays["W1"] = np.zeros((16, 9), dtype=np.float32)
    with pytest.raises(ValueError, match=r"W1 has shape \(16, 9\), architecture says \(16, 8\)"):
        Network.from_arrays(arrays)


def test_two_classes_use_one_sigmoid_unit() -> None:
    network = build_mlp(10, [4], 2, "relu", "he", np.random.default_rng(0))
    assert network.dense_layers[-1].params["W"].shape == (4, 1)
    probs = network.predict_proba(np.ones((3, 10), dtype=np.float32))
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
