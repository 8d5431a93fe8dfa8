"""The from-scratch network: gradients, optimizers, schedules, learning, saving, divergence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from nnlab.core.errors import DivergenceError, Pruned
from nnlab.models.numpy import (
    Network,
    TrainConfig,
    build_mlp,
    fit,
    loss_and_accuracy,
    make_optimizer,
    random_shifts,
)
from nnlab.models.numpy.layers import (
    BatchNorm,
    Dense,
    Dropout,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnlab.models.numpy.optimizers import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    Momentum,
    Nesterov,
    RMSprop,
    scheduled_learning_rate,
)
from tests.support.gradients import numeric_grad, relative_error


def _dense(rng: np.random.Generator) -> Layer:
    return Dense(rng.standard_normal((6, 4)), rng.standard_normal(4))


def _batch_norm(rng: np.random.Generator) -> Layer:
    layer = BatchNorm(6, dtype=np.float64)
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, 6)
    layer.params["beta"][...] = rng.standard_normal(6)
    return layer


LAYERS: dict[str, Callable[[np.random.Generator], Layer]] = {
    "dense": _dense,
    "relu": lambda rng: ReLU(),
    "leaky_relu": lambda rng: LeakyReLU(),
    "tanh": lambda rng: Tanh(),
    "sigmoid": lambda rng: Sigmoid(),
    "batch_norm": _batch_norm,
    "dropout": lambda rng: Dropout(0.4, np.random.default_rng(3)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_gradients_match_central_differences(name: str) -> None:
    """dx and every parameter gradient of each layer type, in training mode, float64."""
    rng = np.random.default_rng(0)
    layer = LAYERS[name](rng)
    x = rng.standard_normal((7, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep ReLU kinks away from the finite-difference step
    upstream = rng.standard_normal(layer.forward(x.copy(), training=True).shape)

    def f() -> float:
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(3)  # the same (fixed) mask on every call
        return float(np.sum(layer.forward(x, training=True) * upstream))

    f()
    dx = layer.backward(upstream.copy())
    analytic = {key: grad.copy() for key, grad in layer.grads.items()}
    assert relative_error(dx, numeric_grad(f, x)) < 1e-6, "dx"
    for key, param in layer.params.items():
        assert relative_error(analytic[key], numeric_grad(f, param)) < 1e-6, key


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_network_gradients_match_central_differences(
    activation: str, n_classes: int, l2: float
) -> None:
    """Both losses (sigmoid + BCE for 2 classes, softmax + CE otherwise), with and without L2."""
    rng = np.random.default_rng(0)
    network = build_mlp(5, [7, 6], n_classes, activation, "xavier", rng, l2=l2, dtype=np.float64)
    x = rng.standard_normal((11, 5))
    labels = rng.integers(0, n_classes, 11).astype(np.int64)
    _check_network_gradients(network, x, labels)


def test_gradients_with_batch_norm_and_fixed_dropout_mask() -> None:
    rng = np.random.default_rng(0)
    network = build_mlp(
        5, [7, 6], 3, "tanh", "xavier", rng, l2=0.01, dropout=0.3, batch_norm=True,
        dtype=np.float64,
    )
    dropouts = [layer for layer in network.layers if isinstance(layer, Dropout)]
    assert len(dropouts) == 2 and any(isinstance(la, BatchNorm) for la in network.layers)
    x = rng.standard_normal((11, 5))
    labels = rng.integers(0, 3, 11).astype(np.int64)

    def reset_masks() -> None:
        for index, layer in enumerate(dropouts):
            layer.rng = np.random.default_rng(index)

    _check_network_gradients(network, x, labels, before_each=reset_masks)


def _check_network_gradients(
    network: Network,
    x: np.ndarray,
    labels: np.ndarray,
    before_each: Callable[[], None] = lambda: None,
) -> None:
    def loss() -> float:
        before_each()
        return network.loss_and_backward(x, labels)[0]

    loss()
    params, grads = network.parameters()
    analytic = {key: grad.copy() for key, grad in grads.items()}
    for key, param in params.items():
        numeric = numeric_grad(loss, param)
        assert relative_error(analytic[key], numeric) < 1e-6, key


# -- optimizers: one or two steps on f(w) = 0.5 * w^2 (gradient = w), by hand ----------------
def _steps(optimizer: object, w0: float, steps: int) -> float:
    w = np.array([w0])
    for _ in range(steps):
        optimizer.update({"w": w}, {"w": w.copy()})  # type: ignore[attr-defined]
    return float(w[0])


def test_sgd_and_momentum_by_hand() -> None:
    assert _steps(SGD(0.1), 2.0, 1) == pytest.approx(1.8, rel=1e-12)
    # v1 = -0.2, w1 = 1.8; v2 = 0.9 * -0.2 - 0.18 = -0.36, w2 = 1.44
    assert _steps(Momentum(0.1, momentum=0.9), 2.0, 2) == pytest.approx(1.44, rel=1e-12)


def test_nesterov_by_hand() -> None:
    # Step 1: v1 = -0.2, w1 = 2 + 0.9 * -0.2 - 0.2 = 1.62.
    # Step 2: g = 1.62, v2 = 0.9 * -0.2 - 0.162 = -0.342, w2 = 1.62 + 0.9 * -0.342 - 0.162
    assert _steps(Nesterov(0.1, momentum=0.9), 2.0, 1) == pytest.approx(1.62, rel=1e-12)
    assert _steps(Nesterov(0.1, momentum=0.9), 2.0, 2) == pytest.approx(
        1.62 - 0.3078 - 0.162, rel=1e-12
    )


def test_adagrad_by_hand() -> None:
    # h1 = 4, w1 = 2 - 0.5 * 2 / (2 + eps) = 1 (up to eps); h2 = 4 + w1^2
    w1 = 2 - 0.5 * 2 / (2 + 1e-7)
    w2 = w1 - 0.5 * w1 / (np.sqrt(4 + w1**2) + 1e-7)
    assert _steps(Adagrad(0.5, epsilon=1e-7), 2.0, 2) == pytest.approx(w2, rel=1e-12)


def test_rmsprop_by_hand() -> None:
    # s1 = 0.1 * 4 = 0.4, w1 = 2 - 0.1 * 2 / (sqrt(0.4) + eps)
    w1 = 2 - 0.1 * 2 / (np.sqrt(0.4) + 1e-7)
    s2 = 0.9 * 0.4 + 0.1 * w1**2
    w2 = w1 - 0.1 * w1 / (np.sqrt(s2) + 1e-7)
    assert _steps(RMSprop(0.1, beta2=0.9, epsilon=1e-7), 2.0, 2) == pytest.approx(w2, rel=1e-12)


def test_adam_by_hand_with_bias_correction() -> None:
    # Bias-corrected m_hat = g and v_hat = g^2, so the first step is lr * g / (|g| + eps').
    assert _steps(Adam(0.1, epsilon=1e-8), 2.0, 1) == pytest.approx(1.9, rel=1e-8)
    w1 = _steps(Adam(0.1, epsilon=1e-8), 2.0, 1)
    m = 0.9 * (0.1 * 2.0) + 0.1 * w1
    v = 0.999 * (0.001 * 2.0**2) + 0.001 * w1**2
    # Without bias correction the step would be lr * m / sqrt(v), about 3x larger here.
    step = 0.1 * np.sqrt(1 - 0.999**2) / (1 - 0.9**2) * m / (np.sqrt(v) + 1e-8)
    assert _steps(Adam(0.1, epsilon=1e-8), 2.0, 2) == pytest.approx(w1 - step, rel=1e-12)


def test_float32_weights_stay_float32() -> None:
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
        w = np.ones(3, dtype=np.float32)
        make_optimizer(name, 0.1).update({"w": w}, {"w": w.copy()})
        assert w.dtype == np.float32 and np.all(w < 1), name


def test_unknown_optimizer_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; choose one of: sgd"):
        make_optimizer("lbfgs", 0.1)


def test_learning_rate_schedules() -> None:
    rates = [scheduled_learning_rate("inverse_time", 0.1, epoch, 1.0, 2) for epoch in range(5)]
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.1 / 3])
    rates = [scheduled_learning_rate("step", 0.1, epoch, 0.5, 2) for epoch in range(5)]
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert scheduled_learning_rate(None, 0.1, 9, 0.5, 2) == 0.1
    with pytest.raises(ValueError, match="unknown learning_rate_decay 'cosine'"):
        scheduled_learning_rate("cosine", 0.1, 0, 0.5, 2)


# -- layers' behaviour -------------------------------------------------------------------
def test_dropout_is_inverted_and_only_active_in_training() -> None:
    layer = Dropout(0.25, np.random.default_rng(0))
    x = np.ones((400, 50), dtype=np.float32)
    assert layer.forward(x, training=False) is x
    out = layer.forward(x, training=True)
    dropped = np.mean(out == 0)
    assert 0.22 < dropped < 0.28
    np.testing.assert_allclose(out[out != 0], 1 / 0.75)  # scaled so the expectation stays x
    assert abs(out.mean() - 1) < 0.03


def test_batch_norm_normalises_in_training_and_uses_running_stats_at_inference() -> None:
    rng = np.random.default_rng(0)
    layer = BatchNorm(3)
    x = (rng.standard_normal((256, 3)) * [1, 5, 10] + [3, -2, 7]).astype(np.float32)
    out = layer.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-2)
    # One update with momentum 0.99 moves the running mean 1% of the way to the batch mean.
    np.testing.assert_allclose(layer.state["running_mean"], 0.01 * x.mean(axis=0), rtol=1e-5)
    for _ in range(2000):
        layer.forward(x, training=True)
    inference = layer.forward(x, training=False)
    np.testing.assert_allclose(inference, out, atol=0.01)


# -- learning -------------------------------------------------------------------------------
def _blobs(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n).astype(np.int64)
    x = rng.standard_normal((n, 10)).astype(np.float32)
    return x, labels


@pytest.mark.parametrize("batch_norm", [False, True])
def test_overfits_64_samples_to_full_training_accuracy(batch_norm: bool) -> None:
    x, labels = _blobs(64, 3)  # random labels: only memorising reaches 100%
    rng = np.random.default_rng(1)
    network = build_mlp(10, [64], 3, "relu", "he", rng, batch_norm=batch_norm)
    fit(network, make_optimizer("adam", 0.01), (x, labels), (x, labels),
        TrainConfig(epochs=200), rng)
    assert loss_and_accuracy(network, x, labels, 64)[1] == 1.0


def test_zeros_init_keeps_hidden_units_identical() -> None:
    x, labels = _blobs(64, 3)
    rng = np.random.default_rng(1)
    # sigmoid(0) = 0.5, so the layers above do get gradients; relu and tanh output 0 and
    # leave every hidden weight at exactly zero.
    network = build_mlp(10, [8, 8], 3, "sigmoid", "zeros", rng)
    history = fit(network, make_optimizer("adam", 0.01), (x, labels), (x, labels),
                  TrainConfig(epochs=5, batch_size=16), rng)
    for dense in network.dense_layers[:-1]:
        W = dense.params["W"]
        assert np.all(W == W[:, :1]), "zero init must leave every hidden unit identical"
    # The weights did change: it trains, it just cannot break the symmetry.
    assert np.any(network.dense_layers[-1].params["W"] != 0)
    assert history[-1]["loss"] < history[0]["loss"]


def test_full_batch_takes_one_step_per_epoch() -> None:
    x, labels = _blobs(50, 3)
    rng = np.random.default_rng(0)
    network = build_mlp(10, [8], 3, "relu", "he", rng)
    optimizer = make_optimizer("adam", 0.01)
    assert isinstance(optimizer, Adam)
    fit(network, optimizer, (x, labels), (x, labels), TrainConfig(epochs=4), rng)
    assert optimizer.step == 4
    fit(network, optimizer, (x, labels), (x, labels), TrainConfig(epochs=1, batch_size=16), rng)
    assert optimizer.step == 4 + 4  # ceil(50 / 16)


def test_learning_rate_decay_is_applied_per_epoch() -> None:
    x, labels = _blobs(32, 3)
    rng = np.random.default_rng(0)
    network = build_mlp(10, [8], 3, "relu", "he", rng)
    config = TrainConfig(epochs=4, learning_rate_decay="step", decay_rate=0.5, decay_epochs=1)
    history = fit(network, make_optimizer("sgd", 0.1), (x, labels), (x, labels), config, rng)
    assert [row["learning_rate"] for row in history] == pytest.approx([0.1, 0.05, 0.025, 0.0125])


def test_early_stopping_restores_the_best_epoch() -> None:
    x, labels = _blobs(64, 3)
    x_val, y_val = _blobs(64, 3, seed=1)  # unrelated labels: validation loss soon rises
    rng = np.random.default_rng(0)
    network = build_mlp(10, [64], 3, "relu", "he", rng)
    config = TrainConfig(epochs=100, batch_size=16, early_stopping_patience=3)
    history = fit(network, make_optimizer("adam", 0.01), (x, labels), (x_val, y_val), config,
                  rng)
    val_losses = [row["val_loss"] for row in history]
    best_epoch = int(np.argmin(val_losses)) + 1
    assert len(history) == best_epoch + 3 < 100
    assert history.best_epoch == best_epoch and history.stopped_early
    assert loss_and_accuracy(network, x_val, y_val, 16)[0] == pytest.approx(min(val_losses),
                                                                            rel=1e-6)


def test_without_early_stopping_every_epoch_runs_and_the_last_is_kept() -> None:
    x, labels = _blobs(64, 3)
    x_val, y_val = _blobs(64, 3, seed=1)
    rng = np.random.default_rng(0)
    network = build_mlp(10, [64], 3, "relu", "he", rng)
    history = fit(network, make_optimizer("adam", 0.01), (x, labels), (x_val, y_val),
                  TrainConfig(epochs=12, batch_size=16), rng)
    assert len(history) == history.best_epoch == 12 and not history.stopped_early
    assert loss_and_accuracy(network, x_val, y_val, 16)[0] == pytest.approx(
        history[-1]["val_loss"])


def test_on_epoch_sees_each_row_and_can_stop_training() -> None:
    x, labels = _blobs(64, 3)
    rng = np.random.default_rng(0)
    network = build_mlp(10, [8], 3, "relu", "he", rng)
    seen: list[dict[str, float]] = []

    def prune_at_three(row: dict[str, float]) -> None:
        seen.append(row)
        if row["epoch"] == 3:
            raise Pruned(3, "pruned after epoch 3")

    with pytest.raises(Pruned, match="after epoch 3"):
        fit(network, make_optimizer("adam", 0.01), (x, labels), (x, labels),
            TrainConfig(epochs=10, batch_size=16, on_epoch=prune_at_three), rng)
    assert [row["epoch"] for row in seen] == [1, 2, 3]
    assert set(seen[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                            "learning_rate"}


def test_random_shifts_move_whole_images_by_whole_pixels_within_reach() -> None:
    images = np.random.default_rng(0).integers(1, 9, (50, 5, 6, 1)).astype(np.float32)
    shift = random_shifts((5, 6, 1), 0.2)  # up to 1 pixel each way
    moved = shift(images.reshape(50, -1), np.random.default_rng(1)).reshape(images.shape)
    again = shift(images.reshape(50, -1), np.random.default_rng(1)).reshape(images.shape)
    np.testing.assert_array_equal(moved, again)  # seeded
    offsets = set()
    for before, after in zip(images, moved, strict=True):
        found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if np.array_equal(after, _shifted(before, dy, dx))]
        assert found, "each image is its original moved by at most one pixel"
        offsets.add(found[0])
    assert len(offsets) == 9  # every offset drawn across 50 images


def test_subpixel_shifts_are_bilinear_translations_as_scipys() -> None:
    """Offsets in fractions of a pixel (drawn down, then across), each image interpolated
    bilinearly with zeros beyond its edges: scipy.ndimage.shift(order=1) agrees."""
    from scipy import ndimage

    images = np.random.default_rng(0).random((40, 7, 8, 2), dtype=np.float32)
    shift = random_shifts((7, 8, 2), 0.3, subpixel=True)
    moved = shift(images.reshape(40, -1), np.random.default_rng(1)).reshape(images.shape)
    draws = np.random.default_rng(1)
    dy, dx = draws.uniform(-2.1, 2.1, 40), draws.uniform(-2.4, 2.4, 40)
    assert np.count_nonzero(np.abs(dy - np.round(dy)) > 0.1) > 20  # mostly between pixels
    for image, after, y, x in zip(images, moved, dy, dx, strict=True):
        expected = ndimage.shift(image.astype(np.float64), (y, x, 0), order=1,
                                 mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(after, expected, atol=1e-5)
    again = shift(images.reshape(40, -1), np.random.default_rng(1)).reshape(images.shape)
    np.testing.assert_array_equal(moved, again)  # seeded


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(image)
    height, width = image.shape[:2]
    for y in range(height):
        for x in range(width):
            if 0 <= y - dy < height and 0 <= x - dx < width:
                out[y, x] = image[y - dy, x - dx]
    return out


def test_same_seed_gives_bit_identical_weights() -> None:
    x, labels = _blobs(100, 4)

    def train() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(7)
        network = build_mlp(10, [16], 4, "relu", "he", rng, dropout=0.3, batch_norm=True)
        fit(network, make_optimizer("adam", 0.01), (x, labels), (x, labels),
            TrainConfig(epochs=3, batch_size=16), rng)
        return network.to_arrays()

    first, second = train(), train()
    for key in first:
        assert np.array_equal(first[key], second[key]), key


def test_divergence_names_epoch_and_fix() -> None:
    x, labels = _blobs(64, 3)
    x *= 1e30
    rng = np.random.default_rng(0)
    network = build_mlp(10, [8], 3, "relu", "he", rng)
    expected = r"in epoch \d+: it diverged; lower numpy_dnn\.learning_rate \(now 10\), e\.g\. to 1$"  # noqa: E501
    with pytest.raises(DivergenceError, match=expected):
        fit(network, make_optimizer("sgd", 10.0), (x, labels), (x, labels),
            TrainConfig(epochs=3), rng)


# -- saving ---------------------------------------------------------------------------------
def test_arrays_round_trip_with_batch_norm_state_and_shape_check() -> None:
    x, labels = _blobs(64, 3)
    rng = np.random.default_rng(0)
    network = build_mlp(10, [16, 8], 3, "tanh", "he", rng, dropout=0.2, batch_norm=True)
    fit(network, make_optimizer("adam", 0.01), (x, labels), (x, labels),
        TrainConfig(epochs=2, batch_size=16), rng)
    arrays = network.to_arrays()
    assert np.any(arrays["1.running_mean"] != 0), "batch-norm statistics must be saved"
    restored = Network.from_arrays(arrays)
    assert restored.architecture == network.architecture
    np.testing.assert_array_equal(network.predict_proba(x), restored.predict_proba(x))

    wrong_shape = {**arrays, "4.W": np.zeros((16, 9), dtype=np.float32)}
    expected = r"'4.W' has shape \(16, 9\), architecture says \(16, 8\)"
    with pytest.raises(ValueError, match=expected):
        Network.from_arrays(wrong_shape)
    del arrays["5.running_var"]
    with pytest.raises(ValueError, match=r"weights are missing '5.running_var'"):
        Network.from_arrays(arrays)


def test_two_classes_use_one_sigmoid_unit() -> None:
    network = build_mlp(10, [4], 2, "relu", "he", np.random.default_rng(0))
    assert network.dense_layers[-1].params["W"].shape == (4, 1)
    probs = network.predict_proba(np.ones((3, 10), dtype=np.float32))
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_layer_order_and_parameter_count() -> None:
    network = build_mlp(64, [32, 16], 10, "relu", "he", np.random.default_rng(0),
                        dropout=0.5, batch_norm=True)
    names = [type(layer).__name__ for layer in network.layers]
    assert names == ["Dense", "BatchNorm", "ReLU", "Dropout"] * 2 + ["Dense"]
    # Hidden Dense layers lose their bias to batch norm's beta; gamma and beta count, the
    # running statistics do not (as in Keras).
    expected = 64 * 32 + 32 * 16 + (16 * 10 + 10) + 2 * (32 + 16)
    assert network.count_params() == expected


# Each rule against its NumPy reference, bit for bit: tests/unit/models/test_update_rules.py.


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_one_flat_update_equals_per_layer_updates_exactly(name: str) -> None:
    """Training updates the whole network through one flat buffer; it must change every
    weight exactly as updating each layer's arrays on their own would."""
    def network() -> Network:
        return build_mlp(20, [16, 8], 3, "relu", "he", np.random.default_rng(0),
                         batch_norm=True)

    x = np.random.default_rng(1).random((12, 20), dtype=np.float32)
    labels = np.arange(12) % 3
    flat, layered = network(), network()
    flat_optimizer = make_optimizer(name, 0.01, momentum=0.9)
    layered_optimizer = make_optimizer(name, 0.01, momentum=0.9)
    for _ in range(3):
        flat.loss_and_backward(x, labels)
        flat_optimizer.update(*flat.flat_parameters())
        layered.loss_and_backward(x, labels)
        layered_optimizer.update(*layered.parameters())
    for key, value in flat.weights().items():
        np.testing.assert_array_equal(value, layered.weights()[key], err_msg=key)
    params, _ = flat.parameters()
    for key, value in params.items():  # the layers' arrays are views into the flat buffer
        assert np.shares_memory(value, flat.flat_params), key
