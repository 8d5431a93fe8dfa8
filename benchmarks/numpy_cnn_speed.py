"""numpy_cnn's speed on the source tutorials' DeepConvNet (MNIST-shaped 28x28x1, Adam, batch
100, float32), each figure next to its target (issue 29), in one run:

1. our training steps, against the tutorial's own design (written here as the reference: its
   `im2col`/`col2im` with Python loops over the window, NCHW, as its `common/util.py`);
2. against Keras, the same net, the same batch, its first epoch not counted;
3. against the step's ceiling: its convolution and dense GEMMs timed back to back at the
   same shapes (forward, dW and dX of each layer), plus the optimizer update, in rounds
   that alternate one training step and one pass of those GEMMs (medians);
4. the peak memory of training above the data (tracemalloc, which sees NumPy's buffers);
5. where a step's time goes, layer by layer.

    python benchmarks/numpy_cnn_speed.py [--steps 20] [--no-keras] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

from nnlab.models.numpy import make_optimizer
from nnlab.models.numpy.conv import Conv2D
from nnlab.models.numpy.convnet import build_cnn
from nnlab.models.numpy.layers import Dense
from nnlab.models.numpy.network import Network

BATCH, SHAPE, CLASSES = 100, (28, 28, 1), 10


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, *SHAPE), dtype=np.float32), rng.integers(0, CLASSES, n)


def ours(steps: int) -> tuple[float, Network, dict[str, float]]:
    """(samples/s, the network, seconds per step by layer)."""
    network = build_cnn(SHAPE, [], CLASSES, "he", np.random.default_rng(0), preset="deep")
    x, y = _data(BATCH)
    adam = make_optimizer("adam", 0.001, momentum=0.9, beta1=0.9, beta2=0.999, epsilon=1e-7)
    params, grads = network.flat_parameters()
    for _ in range(3):  # compiles col2im and the Adam rule
        network.loss_and_backward(x, y)
        adam.update(params, grads)
    start = time.perf_counter()
    for _ in range(steps):
        network.loss_and_backward(x, y)
        adam.update(params, grads)
    rate = steps * BATCH / (time.perf_counter() - start)
    return rate, network, _phases(network, adam, x, y, steps)


def _phases(network: Network, adam: object, x: np.ndarray, y: np.ndarray,
            steps: int) -> dict[str, float]:
    phases: dict[str, float] = {}
    params, grads = network.flat_parameters()
    for _ in range(steps):
        out = x
        for index, layer in enumerate(network.layers):
            start = time.perf_counter()
            out = layer.forward(out, training=True)
            key = f"{index:2d} {type(layer).__name__} forward"
            phases[key] = phases.get(key, 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        network.loss.forward(out, y)
        dout = network.loss.backward()
        phases["   loss"] = phases.get("   loss", 0.0) + time.perf_counter() - start
        for index in reversed(range(len(network.layers))):
            start = time.perf_counter()
            dout = network.layers[index].backward(dout)
            key = f"{index:2d} {type(network.layers[index]).__name__} backward"
            phases[key] = phases.get(key, 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        adam.update(params, grads)  # type: ignore[attr-defined]
        phases["   Adam update"] = phases.get("   Adam update", 0.0) + time.perf_counter() - start
    return {key: value / steps for key, value in phases.items()}


def gemm_ceiling(network: Network, steps: int) -> tuple[float, float]:
    """(seconds per training step, seconds per step of the step's GEMMs alone at its shapes
    plus the Adam update): medians over `steps` rounds that alternate one of each, so that
    the machine's drift (it is shared) hits both figures alike."""
    x, y = _data(BATCH)
    shapes = []
    out = x
    for layer in network.layers:
        if isinstance(layer, Conv2D):  # cols (M, K) @ W (K, F)
            cols = layer._columns(out)
            shapes.append((cols.shape[0], cols.shape[1], layer.params["W"].shape[3]))
        elif isinstance(layer, Dense):
            shapes.append((out.shape[0], *layer.params["W"].shape))
        out = layer.forward(out)
    arrays = [(np.ones((m, k), np.float32), np.ones((k, n), np.float32),
               np.ones((m, n), np.float32)) for m, k, n in shapes]
    adam = make_optimizer("adam", 0.001, momentum=0.9, beta1=0.9, beta2=0.999, epsilon=1e-7)
    params, grads = network.flat_parameters()
    ours, ceiling = [], []
    for _ in range(steps):
        start = time.perf_counter()
        network.loss_and_backward(x, y)
        adam.update(params, grads)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        for a, b, c in arrays:
            a @ b  # forward
            a.T @ c  # dW
            c @ b.T  # dX
        adam.update(params, grads)
        ceiling.append(time.perf_counter() - start)
    return float(np.median(ours)), float(np.median(ceiling))


# -- the tutorial's design, as its common/util.py and common/layers.py write it (NCHW) --------
def im2col(data: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    n, c, h, w = data.shape
    out_h, out_w = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    img = np.pad(data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, kh, kw, out_h, out_w), data.dtype)
    for y in range(kh):
        for x in range(kw):
            col[:, :, y, x, :, :] = img[:, :, y:y + stride * out_h:stride,
                                        x:x + stride * out_w:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)


def col2im(col: np.ndarray, shape: tuple[int, ...], kh: int, kw: int, stride: int,
           pad: int) -> np.ndarray:
    n, c, h, w = shape
    out_h, out_w = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    col = col.reshape(n, out_h, out_w, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), col.dtype)
    for y in range(kh):
        for x in range(kw):
            img[:, :, y:y + stride * out_h:stride, x:x + stride * out_w:stride] += \
                col[:, :, y, x, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


def tutorial(steps: int) -> float:
    """samples/s of the DeepConvNet as the tutorial builds it (its Convolution, Pooling,
    Affine, Relu, Dropout, SoftmaxWithLoss and Adam), one step = forward + backward + Adam."""
    rng = np.random.default_rng(0)
    convs = [(1, 16, 1), (16, 16, 1), (16, 32, 1), (32, 32, 2), (32, 64, 1), (64, 64, 1)]
    weights = [((rng.standard_normal((f, c, 3, 3)) * np.sqrt(2 / (c * 9))).astype(np.float32),
                np.zeros(f, np.float32), pad) for c, f, pad in convs]
    dense = [(rng.standard_normal((64 * 4 * 4, 50)) * np.sqrt(2 / 1024)).astype(np.float32),
             np.zeros(50, np.float32),
             (rng.standard_normal((50, 10)) * np.sqrt(2 / 50)).astype(np.float32),
             np.zeros(10, np.float32)]
    params = [array for W, b, _ in weights for array in (W, b)] + dense
    moments = [[np.zeros_like(p) for p in params] for _ in range(2)]
    x, y = _data(BATCH)
    x = x.transpose(0, 3, 1, 2).copy()

    def step(t: int) -> None:
        caches, out = [], x
        for index, (W, b, pad) in enumerate(weights):
            col = im2col(out, 3, 3, 1, pad)
            result = (col @ W.reshape(W.shape[0], -1).T + b)
            n, _, h, w = out.shape
            oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
            conv_out = result.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
            mask = conv_out > 0
            caches.append((out.shape, col, mask))
            out = conv_out * mask
            if index % 2:
                n, c, h, w = out.shape
                pcol = im2col(out, 2, 2, 2, 0).reshape(-1, 4)
                arg = pcol.argmax(axis=1)
                caches.append((out.shape, arg, None))
                out = pcol.max(axis=1).reshape(n, h // 2, w // 2, c).transpose(0, 3, 1, 2)
        flat = out.reshape(BATCH, -1)
        hidden = flat @ dense[0] + dense[1]
        relu = hidden > 0
        drop1 = rng.random(hidden.shape) > 0.5
        h1 = hidden * relu * drop1
        logits = (h1 @ dense[2] + dense[3]) * (drop2 := rng.random((BATCH, 10)) > 0.5)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(BATCH), y] -= 1
        dlogits = probs / BATCH * drop2
        grads = [None] * len(params)
        grads[-2], grads[-1] = h1.T @ dlogits, dlogits.sum(0)
        dh = (dlogits @ dense[2].T) * relu * drop1
        grads[-4], grads[-3] = flat.T @ dh, dh.sum(0)
        dout = (dh @ dense[0].T).reshape(out.shape)
        for index in reversed(range(len(weights))):
            if index % 2:
                shape, arg, _ = caches.pop()
                dmax = np.zeros((arg.size, 4), np.float32)
                dmax[np.arange(arg.size), arg] = dout.transpose(0, 2, 3, 1).ravel()
                dout = col2im(dmax.reshape(-1, shape[1] * 4), shape, 2, 2, 2, 0)
            shape, col, mask = caches.pop()
            W, _, pad = weights[index]
            d = (dout * mask).transpose(0, 2, 3, 1).reshape(-1, W.shape[0])
            grads[2 * index] = (col.T @ d).transpose(1, 0).reshape(W.shape)
            grads[2 * index + 1] = d.sum(0)
            dout = col2im(d @ W.reshape(W.shape[0], -1), shape, 3, 3, 1, pad)
        lr = 0.001 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        for p, g, m, v in zip(params, grads, *moments, strict=True):  # the tutorial's Adam
            m += (1 - 0.9) * (g - m)
            v += (1 - 0.999) * (g ** 2 - v)
            p -= lr * m / (np.sqrt(v) + 1e-7)

    step(1)
    start = time.perf_counter()
    for t in range(2, steps + 2):
        step(t)
    return steps * BATCH / (time.perf_counter() - start)


def keras_rate(steps: int) -> float:
    """samples/s of the same net in Keras 3 (TensorFlow CPU), its first epoch not counted."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    layers: list[object] = [keras.Input(shape=SHAPE)]
    for index, (filters, pad) in enumerate([(16, 1), (16, 1), (32, 1), (32, 2), (64, 1),
                                            (64, 1)]):
        layers += [keras.layers.ZeroPadding2D(pad),
                   keras.layers.Conv2D(filters, 3, activation="relu")]
        if index % 2:
            layers.append(keras.layers.MaxPooling2D(2))
    layers += [keras.layers.Flatten(), keras.layers.Dense(50, activation="relu"),
               keras.layers.Dropout(0.5), keras.layers.Dense(10), keras.layers.Dropout(0.5)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(0.001),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(BATCH * steps)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # not counted: tracing, warm-up
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    return steps * BATCH / (time.perf_counter() - start)


def peak_memory(steps: int) -> float:
    """MB that training at batch 100 holds at its peak, above its data."""
    x, y = _data(BATCH)
    tracemalloc.start()
    network = build_cnn(SHAPE, [], CLASSES, "he", np.random.default_rng(0), preset="deep")
    adam = make_optimizer("adam", 0.001, momentum=0.9, beta1=0.9, beta2=0.999, epsilon=1e-7)
    params, grads = network.flat_parameters()
    for _ in range(steps):
        network.loss_and_backward(x, y)
        adam.update(params, grads)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras figure")
    parser.add_argument("--quick", action="store_true",
                        help="2 steps: checks that the script runs (make test); no figures")
    args = parser.parse_args()
    if args.quick:
        args.steps = 2
    rate, network, phases = ours(args.steps)
    reference = tutorial(max(args.steps // 4, 3))
    step, ceiling = gemm_ceiling(network, args.steps)
    print(f"DeepConvNet, {network.count_params():,} weights, batch {BATCH}, 28x28x1, Adam")
    print(f"numpy_cnn: {rate:,.0f} samples/s")
    print(f"the tutorial's design: {reference:,.0f} samples/s -> {rate / reference:.2f}x "
          "(target >= 3x)")
    if not args.no_keras:
        theirs = keras_rate(args.steps * 3)
        print(f"Keras: {theirs:,.0f} samples/s -> {rate / theirs:.2f}x (target >= 0.35x)")
    print(f"step: {step * 1e3:.1f} ms; its GEMMs and Adam alone: {ceiling * 1e3:.1f} ms "
          f"-> {ceiling / step:.0%} of the ceiling (target >= 75%; medians of {args.steps} "
          "rounds, one of each in turn)")
    print(f"peak memory of training above the data: {peak_memory(min(3, args.steps)):.0f} MB "
          "(target <= 400)")
    total = sum(phases.values())
    print("where a step's time goes:")
    for key, seconds in sorted(phases.items(), key=lambda item: -item[1])[:12]:
        print(f"  {key:28s} {seconds * 1e3:6.2f} ms  {seconds / total:4.0%}")


if __name__ == "__main__":
    main()
