"""Training speed: numpy_dnn against the same MLP in Keras, measured in one run.

Both train on MNIST-shaped float32 data (N x 784, 10 classes) with Adam and batch 128. The
script prints samples per second for each, their ratio, numpy_dnn's achieved GFLOP/s and a
float32 matmul peak measured in the same run. The machine is shared and its speed drifts, so
numpy_dnn's epochs alternate with peak measurements and the medians are reported.

    python benchmarks/numpy_vs_keras.py                      # both default architectures
    python benchmarks/numpy_vs_keras.py --arch 784-128-10 --samples 12800 --epochs 3

Targets (issue 4): 784-128-10 numpy >= 5x Keras; 784-1024-1024-10 numpy >= 1.3x Keras and
>= 65% of the matmul peak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from nnlab.numpy_dnn import TrainConfig, build_mlp, fit, make_optimizer

BATCH = 128
N_CLASSES = 10


def matmul_peak(size: int = 2048, repeats: int = 3) -> float:
    """Best float32 GFLOP/s of a (size x size) @ (size x size) NumPy matmul."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up
    best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(run) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def training_flops_per_sample(sizes: list[int]) -> int:
    """Matmul FLOPs numpy_dnn performs per training sample: forward x W, dW, and dX for
    every layer but the first (whose input gradient it skips). Element-wise work excluded."""
    flops = 0
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        flops += 2 * n_in * n_out * (2 if index == 0 else 3)
    return flops


def bench_numpy(sizes: list[int], x, y, epochs: int):  # type: ignore[no-untyped-def]
    """Medians of samples/s, matmul peak GFLOP/s, and the fraction of that peak reached in
    each epoch (each epoch is compared with the peak measured just before it)."""
    rng = np.random.default_rng(0)
    network = build_mlp(sizes[0], sizes[1:-1], N_CLASSES, "relu", "he", rng)
    optimizer = make_optimizer("adam", 1e-3)
    x_val, y_val = x[:BATCH], y[:BATCH]
    rates, peaks, utilisations = [], [], []
    for _ in range(epochs):
        peaks.append(peak := matmul_peak())
        seconds = _timed(
            lambda: fit(network, optimizer, (x, y), (x_val, y_val),
                        TrainConfig(epochs=1, batch_size=BATCH, progress=False), rng)
        )
        rates.append(x.shape[0] / seconds)
        utilisations.append(rates[-1] * training_flops_per_sample(sizes) / 1e9 / peak)
    return [statistics.median(values) for values in (rates, peaks, utilisations)]


def bench_keras(sizes: list[int], x, y, epochs: int) -> float:  # type: ignore[no-untyped-def]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(shape=(sizes[0],))]
        + [keras.layers.Dense(units, activation="relu") for units in sizes[1:-1]]
        + [keras.layers.Dense(sizes[-1])]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x_val, y_val = x[:BATCH], y[:BATCH]
    # The first epoch traces and compiles the train step: not counted.
    model.fit(x, y, batch_size=BATCH, epochs=1, validation_data=(x_val, y_val), verbose=0)
    seconds = _timed(
        lambda: model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=(x_val, y_val),
                          verbose=0)
    )
    return epochs * x.shape[0] / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", action="append", help="e.g. 784-128-10 (repeatable)")
    parser.add_argument("--samples", type=int, default=12_800, help="training samples")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per framework")
    args = parser.parse_args(argv)
    archs = args.arch or ["784-128-10", "784-1024-1024-10"]

    rng = np.random.default_rng(0)
    x = rng.random((args.samples, 784), dtype=np.float32)  # pixels scaled to [0, 1)
    y = rng.integers(0, N_CLASSES, args.samples).astype(np.int64)

    print(f"{args.samples} samples x {args.epochs} timed epochs, Adam, batch {BATCH}")
    print("GFLOP/s counts the matmuls numpy_dnn executes (forward, dW, and dX except for the")
    print("first layer). Peak: best 2048^3 float32 matmul, measured before each numpy epoch;")
    print("% of peak is the median over epochs of (epoch GFLOP/s / the peak just before it)\n")
    header = f"{'arch':<18} {'numpy samples/s':>16} {'keras samples/s':>16} {'ratio':>7}"
    print(f"{header} {'numpy GFLOP/s':>14} {'peak GFLOP/s':>13} {'% of peak':>10}")
    for arch in archs:
        sizes = [int(part) for part in arch.split("-")]
        if sizes[0] != 784 or sizes[-1] != N_CLASSES:
            parser.error(f"--arch must start with 784 and end with 10; Received: {arch}")
        numpy_rate, peak, utilisation = bench_numpy(sizes, x, y, args.epochs)
        keras_rate = bench_keras(sizes, x, y, args.epochs)
        gflops = numpy_rate * training_flops_per_sample(sizes) / 1e9
        print(
            f"{arch:<18} {numpy_rate:>16,.0f} {keras_rate:>16,.0f} "
            f"{numpy_rate / keras_rate:>6.2f}x {gflops:>14.1f} {peak:>13.1f} "
            f"{100 * utilisation:>9.0f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
