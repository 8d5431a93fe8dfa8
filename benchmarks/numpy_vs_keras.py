"""numpy_dnn's speed against its physical ceiling and against Keras, measured in one run.

It prints every figure next to its target (issue 21):
1. The optimizer update over the big MLP's parameters, for Adam, RMSprop, Adagrad and
   momentum, against its memory floor: the bytes the update must move (each array it reads
   once, each array it writes once) over the memory bandwidth measured in this run on one
   thread, as the update runs (the best of a copy and an in-place add; the floor over the
   bandwidth of every CPU is printed too). Caches are flushed before each timed update, so
   its arrays come from memory.
   Target: <= 1.3x the floor.
2. Training speed (Adam, batch 128, MNIST-shaped float32 data) of each MLP, from numpy_dnn's
   own `fit`, against the step's ceiling: the step's matmuls timed back to back plus the
   update's memory floor. Target for 784-1024-1024-10: >= 85% of the ceiling.
3. The same MLP in Keras, timed after numpy_dnn (so TensorFlow is not even loaded while
   numpy_dnn runs). Targets: 784-128-10 >= 5x Keras, 784-1024-1024-10 >= 1.3x Keras. They
   are judged on a machine whose OpenBLAS runs its AVX-512 kernels; the kernels and the
   thread settings in force are printed first, and never changed here.

    python benchmarks/numpy_vs_keras.py [--quick]
    python benchmarks/numpy_vs_keras.py --arch 784-128-10 --samples 12800 --epochs 3

The machine may be shared and noisy: numpy_dnn's epochs alternate with ceiling measurements
and every figure is a median; compare figures within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info

from nnlab.models.numpy import TrainConfig, build_mlp, fit, make_optimizer

BATCH = 128
N_CLASSES = 10
BIG = "784-1024-1024-10"
SMALL = "784-128-10"
# Arrays an update reads and writes once each, per element: param and grad in, param out,
# plus each state array in and out.
STREAMS = {"adam": 7, "rmsprop": 5, "adagrad": 5, "momentum": 5}
TARGETS = {"update": 1.3, "ceiling": 0.85, SMALL: 5.0, BIG: 1.3}
THREAD_SETTINGS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                   "MKL_NUM_THREADS")


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def matmul_peak(size: int = 2048, repeats: int = 3) -> float:
    """Best float32 GFLOP/s of a (size x size) @ (size x size) NumPy matmul."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up
    best = min(timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def parse_arch(arch: str) -> list[int]:
    sizes = [int(part) for part in arch.split("-")]
    if sizes[0] != 784 or sizes[-1] != N_CLASSES or len(sizes) < 2:
        raise SystemExit(f"--arch must start with 784 and end with 10; Received: {arch}")
    return sizes


def n_params(sizes: list[int]) -> int:
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))


def matmul_shapes(sizes: list[int], batch: int = BATCH) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matmul in one training step, in numpy_dnn's order: forward x W,
    then per layer from the top dW = x.T @ dout and dX = dout @ W.T (not for the first)."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    shapes = [(batch, n_in, n_out) for n_in, n_out in pairs]
    for index, (n_in, n_out) in reversed(list(enumerate(pairs))):
        shapes.append((n_in, batch, n_out))
        if index > 0:
            shapes.append((batch, n_out, n_in))
    return shapes


def step_matmuls(sizes: list[int], rng: np.random.Generator) -> Callable[[], None]:
    """A function running one step's matmuls back to back on preallocated operands."""
    operands = [(rng.standard_normal((m, k), dtype=np.float32),
                 rng.standard_normal((k, n), dtype=np.float32),
                 np.empty((m, n), dtype=np.float32)) for m, k, n in matmul_shapes(sizes)]

    def run() -> None:
        for a, b, out in operands:
            np.matmul(a, b, out=out)

    return run


def per_call_seconds(run: Callable[[], object], calls: int) -> float:
    run()  # warm-up
    return timed(lambda: [run() for _ in range(calls)]) / calls


class Memory:
    """Memory bandwidth, and a cache flush, on 128 MB arrays (4x the last-level cache here)."""

    SIZE = 32 * 1024 * 1024  # float32 elements

    def __init__(self) -> None:
        self.src = np.ones(self.SIZE, dtype=np.float32)
        self.dst = np.zeros_like(self.src)

    def flush(self) -> None:
        """Evict the caches by reading 128 MB through them. Reading only: lines left dirty
        by a flush that writes would be written back during the next timed update."""
        np.max(self.src)

    def bandwidth(self, threads: int, repeats: int = 5) -> float:
        """Bytes read plus bytes written per second, over `threads` threads: the best run
        of np.copyto(dst, src) and of an in-place np.add (dst += 1)."""
        step = self.SIZE // threads
        parts = [(self.dst[start : start + step], self.src[start : start + step])
                 for start in range(0, self.SIZE, step)]
        kernels = (lambda dst, src: np.copyto(dst, src),
                   lambda dst, src: np.add(dst, 1, out=dst))
        with ThreadPoolExecutor(threads) as pool:
            seconds = min(timed(lambda: list(pool.map(lambda part: kernel(*part), parts)))  # noqa: B023
                          for kernel in kernels for _ in range(repeats))
        return 2 * self.src.nbytes / seconds


def bench_updates(size: int, memory: Memory, repeats: int) -> dict[str, float]:
    """{optimizer: median seconds of one update} over `size` float32 params."""
    rng = np.random.default_rng(0)
    results = {}
    for name in STREAMS:
        params = {"flat": rng.standard_normal(size, dtype=np.float32)}
        grads = {"flat": rng.standard_normal(size, dtype=np.float32) * 1e-3}
        optimizer = make_optimizer(name, 1e-4, momentum=0.9)
        optimizer.update(params, grads)  # allocates its state
        seconds = []
        for _ in range(repeats):
            memory.flush()
            seconds.append(timed(lambda: optimizer.update(params, grads)))  # noqa: B023
        results[name] = statistics.median(seconds)
    return results


def bench_numpy(sizes: list[int], x: np.ndarray, y: np.ndarray, epochs: int,
                update_floor: float) -> tuple[float, float, float]:
    """Medians of (samples/s of `fit`, ceiling samples/s, share of the ceiling per epoch).

    Each epoch is compared with the ceiling measured just before it: the step's matmuls
    timed back to back, plus the Adam update's memory floor."""
    rng = np.random.default_rng(0)
    network = build_mlp(sizes[0], sizes[1:-1], N_CLASSES, "relu", "he", rng)
    optimizer = make_optimizer("adam", 1e-3)
    matmuls = step_matmuls(sizes, rng)
    val = (x[:BATCH], y[:BATCH])
    config = TrainConfig(epochs=1, batch_size=BATCH)
    fit(network, optimizer, (x, y), val, config, rng)  # warm-up: numba compiles the update
    rates, ceilings, shares = [], [], []
    for _ in range(epochs):
        step_ceiling = per_call_seconds(matmuls, 20) + update_floor
        ceilings.append(BATCH / step_ceiling)
        rates.append(x.shape[0] / timed(lambda: fit(network, optimizer, (x, y), val, config,
                                                    rng)))
        shares.append(rates[-1] / ceilings[-1])
    return statistics.median(rates), statistics.median(ceilings), statistics.median(shares)


def bench_keras(sizes: list[int], x: np.ndarray, y: np.ndarray, epochs: int) -> float:
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
    val = (x[:BATCH], y[:BATCH])
    # The first epoch traces and compiles the train step: not counted.
    model.fit(x, y, batch_size=BATCH, epochs=1, validation_data=val, verbose=0)
    rates = []
    for _ in range(epochs):
        seconds = timed(lambda: model.fit(x, y, batch_size=BATCH, epochs=1,
                                          validation_data=val, verbose=0))
        rates.append(x.shape[0] / seconds)
    return statistics.median(rates)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def print_machine() -> None:
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    kernels = ", ".join(f"{info.get('internal_api')} {info.get('version')} "
                        f"{info.get('architecture')} kernels, {info.get('num_threads')} "
                        f"threads" for info in blas)
    settings = ", ".join(f"{name}={os.environ.get(name, '(unset)')}"
                         for name in THREAD_SETTINGS)
    print(f"BLAS: {kernels or 'none found'}")
    print(f"settings: {settings} (never changed here)")
    print(f"CPUs: {os.cpu_count()}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", action="append", help=f"e.g. {SMALL} (repeatable)")
    parser.add_argument("--samples", type=int, default=12_800, help="training samples")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per framework")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per update")
    parser.add_argument("--no-keras", action="store_true", help="numpy_dnn's figures only")
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch of 512 samples, 1 timed update: checks that the script "
                        "runs (make test); no figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.epochs, args.repeats = 512, 1, 1
    archs = args.arch or [SMALL, BIG]
    print_machine()

    memory = Memory()
    big = parse_arch(BIG if BIG in archs else archs[-1])
    size = n_params(big)
    # Bandwidth is measured before and after the updates, on one thread (as the update
    # runs: see nnlab/models/numpy/optimizers.py) and on every CPU; the best of each is used.
    thread_counts = sorted({1, os.cpu_count() or 1})
    before = [memory.bandwidth(threads) for threads in thread_counts]
    updates = bench_updates(size, memory, args.repeats)
    after = [memory.bandwidth(threads) for threads in thread_counts]
    one_thread, all_cpus = max(before[0], after[0]), max(before + after)
    print("memory bandwidth (best run of np.copyto and of an in-place np.add on 128 MB, bytes "
          "read + written), before / after the updates: " + ", ".join(
              f"{first / 1e9:.1f} / {second / 1e9:.1f} GB/s on {threads} thread(s)"
              for threads, first, second in zip(thread_counts, before, after, strict=True)))
    print(f"\n1. optimizer update over {size:,} float32 params ({'-'.join(map(str, big))}), "
          f"caches flushed before each call, median of {args.repeats}. floor = bytes moved / "
          f"{one_thread / 1e9:.1f} GB/s (one thread, as the update runs); the last column "
          f"uses {all_cpus / 1e9:.1f} GB/s (every CPU)")
    print(f"{'optimizer':<10} {'streams':>7} {'floor ms':>9} {'update ms':>10} "
          f"{'x floor':>8}  {'target':<15} {'x all-CPU floor':>15}")
    for name, seconds in updates.items():
        moved = STREAMS[name] * 4 * size
        ratio = seconds * one_thread / moved
        target = f"<= {TARGETS['update']}x {verdict(ratio <= TARGETS['update'])}"
        print(f"{name:<10} {STREAMS[name]:>7} {moved / one_thread * 1e3:>9.2f} "
              f"{seconds * 1e3:>10.2f} {ratio:>7.2f}x  {target:<15} "
              f"{seconds * all_cpus / moved:>14.2f}x")
    bandwidth = one_thread

    rng = np.random.default_rng(0)
    x = rng.random((args.samples, 784), dtype=np.float32)  # pixels scaled to [0, 1)
    y = rng.integers(0, N_CLASSES, args.samples).astype(np.int64)
    print(f"\n2. training, Adam, batch {BATCH}, {args.samples:,} samples, median of "
          f"{args.epochs} epochs of numpy_dnn's fit; ceiling = step matmuls + update floor")
    print(f"{'arch':<18} {'numpy samples/s':>15} {'ceiling':>9} {'share':>6}  target")
    numpy_rates = {}
    for arch in archs:
        sizes = parse_arch(arch)
        floor = STREAMS["adam"] * 4 * n_params(sizes) / bandwidth
        rate, ceiling, share = bench_numpy(sizes, x, y, args.epochs, floor)
        numpy_rates[arch] = rate
        target = (f">= {TARGETS['ceiling']:.0%} {verdict(share >= TARGETS['ceiling'])}"
                  if arch == BIG else "-")
        print(f"{arch:<18} {rate:>15,.0f} {ceiling:>9,.0f} {share:>6.0%}  {target}",
              flush=True)
    if args.no_keras:
        return

    print(f"\n3. against Keras (same MLP, Adam, batch {BATCH}; its first epoch compiles and is "
          "not counted)")
    print(f"{'arch':<18} {'numpy samples/s':>15} {'keras samples/s':>15} {'ratio':>7}  target")
    for arch in archs:
        keras_rate = bench_keras(parse_arch(arch), x, y, args.epochs)
        ratio = numpy_rates[arch] / keras_rate
        target = (f">= {TARGETS[arch]}x {verdict(ratio >= TARGETS[arch])}"
                  if arch in TARGETS else "-")
        print(f"{arch:<18} {numpy_rates[arch]:>15,.0f} {keras_rate:>15,.0f} {ratio:>6.2f}x  "
              f"{target}", flush=True)


if __name__ == "__main__":
    main()
