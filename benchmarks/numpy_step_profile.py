"""Where one numpy_dnn training step spends its time, and the most its matmuls allow.

For an MLP at batch 128 with Adam, this prints:
- the matmul ceiling: the step's matmuls alone (forward, dW, and dX except for the first
  layer, as numpy_dnn runs them) timed back to back, next to a 2048^3 float32 matmul peak
  measured just before, and the samples/s they would allow with no other work;
- the step breakdown: forward, forward + backward, and the optimizer update, timed on
  numpy_dnn's own layers and optimizer.

    python benchmarks/numpy_step_profile.py                       # 784-1024-1024-10
    python benchmarks/numpy_step_profile.py --arch 784-128-10 --repeats 5

The machine is shared and noisy: compare figures within one run, not across runs. NumPy's
BLAS kernels follow OPENBLAS_CORETYPE, which this machine's environment sets.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from numpy_vs_keras import BATCH, N_CLASSES, matmul_peak  # this folder, run as a script
from threadpoolctl import threadpool_info

from nnlab.numpy_dnn import build_mlp, make_optimizer


def matmul_shapes(sizes: list[int], batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matmul in one training step, in numpy_dnn's order."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    shapes = [(batch, n_in, n_out) for n_in, n_out in pairs]  # forward
    for index, (n_in, n_out) in reversed(list(enumerate(pairs))):
        shapes.append((n_in, batch, n_out))  # dW = x.T @ dout
        if index > 0:
            shapes.append((batch, n_out, n_in))  # dX = dout @ W.T
    return shapes


def per_call_ms(run: Callable[[], object], calls: int) -> float:
    run()  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="784-1024-1024-10", help="e.g. 784-128-10")
    parser.add_argument("--repeats", type=int, default=4, help="measurements of each kind")
    parser.add_argument("--calls", type=int, default=20, help="steps timed per measurement")
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.arch.split("-")]
    if sizes[-1] != N_CLASSES:
        parser.error(f"--arch must end with {N_CLASSES}; Received: {args.arch}")

    rng = np.random.default_rng(0)
    kernels = sorted({str(info.get("architecture")) for info in threadpool_info()
                      if info.get("internal_api") == "openblas"})
    print(f"{args.arch}, batch {BATCH}, OpenBLAS kernels: {', '.join(kernels)}\n")

    shapes = matmul_shapes(sizes, BATCH)
    operands = [(rng.standard_normal((m, k), dtype=np.float32),
                 rng.standard_normal((k, n), dtype=np.float32),
                 np.empty((m, n), dtype=np.float32)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)

    def matmuls() -> None:
        for a, b, out in operands:
            np.matmul(a, b, out=out)

    print("matmul ceiling: peak GFLOP/s, step matmuls GFLOP/s (% of peak), samples/s allowed")
    for _ in range(args.repeats):
        peak = matmul_peak()
        ms = per_call_ms(matmuls, args.calls)
        achieved = flops / ms / 1e6
        print(f"  {peak:6.1f}  {achieved:6.1f} ({100 * achieved / peak:3.0f}%)  "
              f"{BATCH / ms * 1e3:8,.0f}")

    network = build_mlp(sizes[0], sizes[1:-1], N_CLASSES, "relu", "he", rng)
    optimizer = make_optimizer("adam", 1e-3)
    params, grads = network.parameters()
    x = rng.random((BATCH, sizes[0]), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, BATCH).astype(np.int64)
    print("\nstep breakdown (ms): forward, forward + backward, adam update, "
          "update share of the step, samples/s")
    for _ in range(args.repeats):
        forward = per_call_ms(lambda: network.logits(x, training=True), args.calls)
        both = per_call_ms(lambda: network.loss_and_backward(x, y), args.calls)
        update = per_call_ms(lambda: optimizer.update(params, grads), args.calls)
        share = 100 * update / (both + update)
        print(f"  {forward:7.1f}  {both:7.1f}  {update:7.1f}  {share:4.0f}%"
              f"  {BATCH / (both + update) * 1e3:8,.0f}")


if __name__ == "__main__":
    main()
