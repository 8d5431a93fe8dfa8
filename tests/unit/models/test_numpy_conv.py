"""numpy_dnn's convolution layers: float64 central-difference gradient checks, the shapes Keras
gives, the im2col fast path against a direct loop, and errors that name the bad value."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.models.numpy.conv import BatchNorm2D, Conv2D, Flatten, MaxPool2D
from nnlab.models.numpy.convnet import build_cnn
from nnlab.models.numpy.layers import Dense, Layer, ReLU
from nnlab.models.numpy.losses import SoftmaxCrossEntropy
from nnlab.models.numpy.network import Network
from tests.support.gradients import numeric_grad, relative_error


def _check_layer(layer: Layer, x: np.ndarray, rng: np.random.Generator) -> None:
    """dx and every parameter gradient of `layer` at x, in training mode."""
    upstream = rng.standard_normal(layer.forward(x.copy(), training=True).shape)

    def f() -> float:
        return float(np.sum(layer.forward(x, training=True) * upstream))

    f()
    dx = layer.backward(upstream.copy())
    analytic = {key: grad.copy() for key, grad in layer.grads.items()}
    assert dx.shape == x.shape
    assert relative_error(dx, numeric_grad(f, x)) < 1e-6, "dx"
    for key, param in layer.params.items():
        assert relative_error(analytic[key], numeric_grad(f, param)) < 1e-6, key


def _direct_conv(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, pads: tuple[int, int],
                 out: tuple[int, int]) -> np.ndarray:
    """The definition, by loops: out[n, y, x, f] = sum over the window of x * W, plus b."""
    padded = np.pad(x, ((0, 0), (pads[0], pads[0] + 2), (pads[1], pads[1] + 2), (0, 0)))
    kh, kw, _, filters = W.shape
    result = np.zeros((x.shape[0], *out, filters))
    for y in range(out[0]):
        for column in range(out[1]):
            window = padded[:, y * stride:y * stride + kh, column * stride:column * stride + kw]
            result[:, y, column] = np.tensordot(window, W, axes=3) + b
    return result


@pytest.mark.parametrize(("padding", "stride", "kernel", "expected"), [
    ("same", 1, (3, 3), (7, 6)), ("valid", 1, (3, 3), (5, 4)), ("same", 2, (3, 3), (4, 3)),
    ("valid", 2, (3, 2), (3, 3)), ("same", 2, (5, 5), (4, 3)),
])
def test_conv2d_gradients_and_shapes(padding: str, stride: int, kernel: tuple[int, int],
                                     expected: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    layer = Conv2D(rng.standard_normal((*kernel, 3, 4)), rng.standard_normal(4), stride, padding)
    x = rng.standard_normal((2, 7, 6, 3))
    assert layer.forward(x).shape == (2, *expected, 4)  # Keras's output sizes
    _check_layer(layer, x, rng)


def test_conv2d_im2col_matches_the_direct_definition() -> None:
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((3, 8, 8, 2)), rng.standard_normal((3, 3, 2, 5)), \
        rng.standard_normal(5)
    np.testing.assert_allclose(Conv2D(W, b, 1, "valid").forward(x),
                               _direct_conv(x, W, b, 1, (0, 0), (6, 6)), atol=1e-12)
    np.testing.assert_allclose(Conv2D(W, b, 2, "same").forward(x),  # pads 0 before, 1 after
                               _direct_conv(x, W, b, 2, (0, 0), (4, 4)), atol=1e-12)
    np.testing.assert_allclose(Conv2D(W, b, 1, "same").forward(x),
                               _direct_conv(x, W, b, 1, (1, 1), (8, 8)), atol=1e-12)


@pytest.mark.parametrize("chunk_bytes", [1, 6 * 5 * 27 * 8 * 2])  # 1 sample; 2 (float64 rows)
def test_conv2d_in_chunks_gives_the_whole_batchs_outputs_and_gradients(chunk_bytes: int) -> None:
    """The batch goes through in chunks of columns; any split gives the same results."""
    rng = np.random.default_rng(3)
    W, b = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    x = rng.standard_normal((5, 6, 5, 3))
    whole, chunked = Conv2D(W, b, 1, "same"), Conv2D(W.copy(), b.copy(), 1, "same")
    chunked.CHUNK_BYTES = chunk_bytes
    assert len(chunked._chunks(5, 6 * 5 * 27 * 8)) == (5 if chunk_bytes == 1 else 3)
    upstream = rng.standard_normal((5, 6, 5, 4))
    np.testing.assert_allclose(chunked.forward(x), whole.forward(x), atol=1e-12)
    np.testing.assert_allclose(chunked.backward(upstream.copy()), whole.backward(upstream.copy()),
                               atol=1e-12)
    for key in whole.grads:
        np.testing.assert_allclose(chunked.grads[key], whole.grads[key], atol=1e-12)
    _check_layer(chunked, x, rng)


def test_conv2d_reuses_its_buffers_across_steps() -> None:
    rng = np.random.default_rng(2)
    layer = Conv2D(rng.standard_normal((3, 3, 1, 2)).astype(np.float32), None)
    x = rng.standard_normal((4, 6, 6, 1)).astype(np.float32)
    first = layer.forward(x)
    buffers = {key: tuple(id(array) for array in value) for key, value in layer._buffers.items()}
    second = layer.forward(x)
    assert buffers == {key: tuple(id(array) for array in value)
                       for key, value in layer._buffers.items()}
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and layer.backward(np.ones_like(first)).dtype == np.float32


@pytest.mark.parametrize(("padding", "shape"), [("valid", (2, 6, 4, 3)), ("valid", (2, 7, 5, 3)),
                                                ("same", (2, 7, 5, 3))])
def test_maxpool2d_gradients(padding: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    x = rng.permutation(np.prod(shape)).reshape(shape) / 10.0  # distinct values: no ties
    layer = MaxPool2D(2, padding)
    expected = -(-shape[1] // 2) if padding == "same" else shape[1] // 2
    assert layer.forward(x).shape[1] == expected
    _check_layer(layer, x, rng)


def test_maxpool2d_sends_a_tied_windows_gradient_to_its_first_largest_value() -> None:
    """At a tie the max is not differentiable; like Keras, the first largest value (in
    row-major order) gets the whole gradient, so nothing is counted twice."""
    x = np.zeros((1, 2, 4, 1))
    x[0, :, 2:, 0] = [[5.0, 5.0], [1.0, 5.0]]  # a tie of three in the second window
    layer = MaxPool2D(2)
    np.testing.assert_array_equal(layer.forward(x)[0, 0, :, 0], [0.0, 5.0])
    dx = layer.backward(np.full((1, 1, 2, 1), 3.0))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[3.0, 0, 3.0, 0], [0, 0, 0, 0]])


def test_batch_norm_over_channels_gradients_and_statistics() -> None:
    rng = np.random.default_rng(4)
    layer = BatchNorm2D(3, dtype=np.float64)
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, 3)
    layer.params["beta"][...] = rng.standard_normal(3)
    x = rng.standard_normal((4, 3, 5, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]
    out = BatchNorm2D(3, dtype=np.float64).forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-12)  # per channel
    var = x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), np.sqrt(var / (var + 1e-3)))
    _check_layer(layer, x, rng)


def test_a_whole_small_convnet_has_the_gradients_of_central_differences() -> None:
    """Conv(same) -> ReLU -> MaxPool -> Conv(valid, stride 2) -> BN -> ReLU -> Flatten ->
    Dense -> softmax cross-entropy: every parameter's gradient, through every layer."""
    rng = np.random.default_rng(5)
    layers: list[Layer] = [
        Conv2D(rng.standard_normal((3, 3, 1, 3)) * 0.5, rng.standard_normal(3) * 0.1),
        ReLU(), MaxPool2D(2, "same"),
        Conv2D(rng.standard_normal((2, 2, 3, 4)) * 0.5, None, 2, "valid"),
        BatchNorm2D(4, dtype=np.float64), ReLU(), Flatten(),
        Dense(rng.standard_normal((16, 3)) * 0.5, rng.standard_normal(3) * 0.1),
    ]
    x = rng.standard_normal((5, 9, 9, 1))
    labels = rng.integers(0, 3, 5).astype(np.int64)
    loss = SoftmaxCrossEntropy()

    def f() -> float:
        out = x
        for layer in layers:
            out = layer.forward(out, training=True)
        return loss.forward(out, labels)

    f()
    dout = loss.backward()
    for layer in reversed(layers):
        dout = layer.backward(dout)
    for index, layer in enumerate(layers):
        for key, param in layer.params.items():
            error = relative_error(layer.grads[key].copy(), numeric_grad(f, param))
            assert error < 1e-6, (index, type(layer).__name__, key)


def test_bad_arguments_name_the_value_and_what_works() -> None:
    with pytest.raises(ValueError, match="unknown padding .full.; choose one of: same, valid, or"):
        Conv2D(np.zeros((3, 3, 1, 2)), None, 1, "full")
    with pytest.raises(ValueError, match=r"must be \(kh, kw, C, F\); Received: \(3, 3\)"):
        Conv2D(np.zeros((3, 3)), None)
    with pytest.raises(ValueError, match="stride must be at least 1; Received: stride=0"):
        Conv2D(np.zeros((3, 3, 1, 2)), None, 0)
    with pytest.raises(ValueError, match="a 5-wide window does not fit in 4 pixels"):
        Conv2D(np.zeros((5, 5, 1, 2)), None, 1, "valid").forward(np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="pool size must be at least 1; Received: size=0"):
        MaxPool2D(0)


def test_the_deep_preset_is_the_tutorials_deepconvnet_layer_for_layer() -> None:
    network = build_cnn((28, 28, 1), [], 10, "he", np.random.default_rng(0), preset="deep")
    assert network.count_params() == 123_552  # the tutorial's figure
    convs = [layer for layer in network.layers if isinstance(layer, Conv2D)]
    assert [(conv.params["W"].shape[3], conv.padding) for conv in convs] == [
        (16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds[-7:] == ["MaxPool2D", "Flatten", "Dense", "ReLU", "Dropout", "Dense", "Dropout"]
    x = np.zeros((2, 28, 28, 1), np.float32)
    assert network.logits(x).shape == (2, 10)
    out = x
    for layer in network.layers[:kinds.index("Flatten")]:
        out = layer.forward(out)
    assert out.shape == (2, 4, 4, 64)  # the last pool leaves 4x4x64


def test_a_saved_convnet_rebuilds_with_the_same_outputs() -> None:
    rng = np.random.default_rng(6)
    network = build_cnn((8, 8, 1), [(4, 1), (8, 2)], 3, "he", rng, block_dropout=0.25,
                        dense_units=[16], dense_dropout=0.5, batch_norm=True)
    x = rng.random((5, 8, 8, 1), dtype=np.float32)
    network.loss_and_backward(x, np.array([0, 1, 2, 0, 1]))  # moves the BN statistics
    rebuilt = Network.from_arrays(network.to_arrays(), build=build_cnn)
    np.testing.assert_array_equal(rebuilt.logits(x), network.logits(x))
