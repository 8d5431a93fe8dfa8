"""Where one numpy_dnn training step spends its time, phase by phase, and its ceiling.

For an MLP at batch 128 with Adam, on MNIST-shaped random data, this runs the steps that
`fit` runs (shuffled gather, forward layer by layer, loss, backward layer by layer, the
optimizer update, the accuracy count) with a perf_counter around each phase, and prints
the mean time per step of each phase next to:
- the step's matmuls alone (forward, dW, and dX except for the first layer), timed back to
  back, with a 2048^3 float32 matmul peak measured in the same run;
- what is left once the matmuls and the update are taken away: Python and small arrays.

    python benchmarks/numpy_step_profile.py                      # 784-128-10 [--quick]
    python benchmarks/numpy_step_profile.py --arch 784-1024-1024-10

The machine may be shared and noisy: compare figures within one run, not across runs.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from numpy_vs_keras import (  # this folder, run as a script
    BATCH,
    N_CLASSES,
    SMALL,
    matmul_peak,
    matmul_shapes,
    parse_arch,
    per_call_seconds,
    step_matmuls,
)

from nnlab.models.numpy import build_mlp, make_optimizer


def profile_steps(sizes: list[int], samples: int, epochs: int) -> dict[str, float]:
    """Mean seconds per step of each phase, over `epochs` passes after one warm-up pass."""
    rng = np.random.default_rng(0)
    network = build_mlp(sizes[0], sizes[1:-1], N_CLASSES, "relu", "he", rng)
    optimizer = make_optimizer("adam", 1e-3)
    params, grads = network.flat_parameters()
    x_train = rng.random((samples, sizes[0]), dtype=np.float32)
    y_train = rng.integers(0, N_CLASSES, samples).astype(np.int64)
    totals: dict[str, float] = defaultdict(float)
    steps = 0
    clock = 0.0

    def phase(name: str) -> None:
        """Charge the time since the last call (or the step's start) to `name`."""
        nonlocal clock
        now = time.perf_counter()
        totals[name] += now - clock
        clock = now

    for epoch in range(epochs + 1):
        if epoch == 1:  # the first pass warms up (numba's compilation, buffers)
            totals.clear()
            steps = 0
        order = rng.permutation(samples)
        for start in range(0, samples, BATCH):
            clock = time.perf_counter()
            index = order[start : start + BATCH]
            x, labels = x_train[index], y_train[index]
            phase("gather the batch")
            for number, layer in enumerate(network.layers):
                x = layer.forward(x, training=True)
                phase(f"forward {number} {type(layer).__name__}")
            network.loss.forward(x, labels)
            dout = network.loss.backward()
            phase("softmax + cross-entropy, forward and backward")
            for number, layer in reversed(list(enumerate(network.layers))):
                dout = layer.backward(dout)
                phase(f"backward {number} {type(layer).__name__}")
            optimizer.update(params, grads)
            phase("adam update")
            int(np.count_nonzero(network.loss.probs.argmax(axis=1) == labels))
            phase("accuracy count")
            steps += 1
    return {name: seconds / steps for name, seconds in totals.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=SMALL, help="e.g. 784-1024-1024-10")
    parser.add_argument("--samples", type=int, default=12_800, help="training samples")
    parser.add_argument("--epochs", type=int, default=3, help="profiled passes")
    parser.add_argument("--quick", action="store_true",
                        help="one pass over 512 samples: checks that the script runs (make test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.epochs = 512, 1
    sizes = parse_arch(args.arch)
    rng = np.random.default_rng(0)

    peak = matmul_peak()
    matmuls = per_call_seconds(step_matmuls(sizes, rng), 50)
    flops = sum(2 * m * k * n for m, k, n in matmul_shapes(sizes))
    phases = profile_steps(sizes, args.samples, args.epochs)
    step = sum(phases.values())
    print(f"{args.arch}, batch {BATCH}, Adam: {step * 1e3:.3f} ms per step = "
          f"{BATCH / step:,.0f} samples/s ({args.epochs} passes over {args.samples:,} samples)")
    print(f"the step's matmuls back to back: {matmuls * 1e3:.3f} ms ({flops / matmuls / 1e9:.0f} "
          f"GFLOP/s; a 2048^3 matmul peaks at {peak:.0f})\n")
    print(f"{'phase':<48} {'ms/step':>8} {'share':>6}")
    for name, seconds in phases.items():
        print(f"{name:<48} {seconds * 1e3:>8.3f} {seconds / step:>6.0%}")
    dense = sum(seconds for name, seconds in phases.items() if "Dense" in name)
    rest = step - dense - phases["adam update"]
    print(f"\n{'Dense layers (their matmuls, bias add and sum)':<48} {dense * 1e3:>8.3f} "
          f"{dense / step:>6.0%}")
    print(f"{'everything but Dense layers and the update':<48} {rest * 1e3:>8.3f} "
          f"{rest / step:>6.0%}")


if __name__ == "__main__":
    main()
