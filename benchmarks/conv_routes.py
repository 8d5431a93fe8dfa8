"""Why numpy_cnn's step stops near half of its GEMM ceiling (issue 29): at each of the
DeepConvNet's six convolutions (batch 100, float32), in rounds that alternate every route
(medians), the milliseconds of

1. the ceiling's part: the layer's three GEMMs alone (forward, dW, dX) on ready operands;
2. our Conv2D (im2col + those GEMMs + col2im), forward and backward, and within it the
   im2col fill and the col2im scatter timed alone;
3. a direct convolution compiled by numba (no columns at all): forward, dX and dW, each a
   loop nest over both cores (prange over samples; dW summed in 4 fixed chunks, so it is
   deterministic), vectorised over filters or channels.

Each direct kernel is checked against Conv2D before it is timed. numba's OpenMP threads
wait passively (OMP_WAIT_POLICY=PASSIVE): spinning after each direct kernel, they slowed the
next OpenBLAS GEMMs by about 20%.

    python benchmarks/conv_routes.py [--rounds 15] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numba starts its threads
from numba import njit, prange  # noqa: E402

from nnlab.models.numpy import kernels  # noqa: E402
from nnlab.models.numpy.conv import Conv2D  # noqa: E402

BATCH = 100
# (input side, in channels, filters, padding) of the DeepConvNet's convs on 28x28x1
CONVS = [(28, 1, 16, 1), (28, 16, 16, 1), (14, 16, 32, 1), (14, 32, 32, 2), (8, 32, 64, 1),
         (8, 64, 64, 1)]
PARTS = 4  # dW's fixed chunks of samples


@njit(cache=True, error_model="numpy", parallel=True)
def direct_forward(padded, W, out):  # stride 1; padded (N, Hp, Wp, C), W (kh, kw, C, F)
    n_samples, out_h, out_w, filters = out.shape
    kh, kw, channels, _ = W.shape
    for n in prange(n_samples):
        acc = np.empty(filters, out.dtype)
        for y in range(out_h):
            for x in range(out_w):
                acc[:] = 0
                for i in range(kh):
                    for j in range(kw):
                        for c in range(channels):
                            v = padded[n, y + i, x + j, c]
                            for f in range(filters):
                                acc[f] += v * W[i, j, c, f]
                out[n, y, x, :] = acc


@njit(cache=True, error_model="numpy", parallel=True)
def direct_dx(dout, Wt, dpadded):  # Wt (kh, kw, F, C); dpadded zeroed by the caller
    n_samples, out_h, out_w, filters = dout.shape
    kh, kw, _, channels = Wt.shape
    for n in prange(n_samples):
        for y in range(out_h):
            for x in range(out_w):
                for i in range(kh):
                    for j in range(kw):
                        for f in range(filters):
                            g = dout[n, y, x, f]
                            for c in range(channels):
                                dpadded[n, y + i, x + j, c] += g * Wt[i, j, f, c]


@njit(cache=True, error_model="numpy", parallel=True)
def direct_dw(padded, dout, parts):  # parts (PARTS, kh, kw, C, F)
    n_samples, out_h, out_w, filters = dout.shape
    n_parts, kh, kw, channels, _ = parts.shape
    size = (n_samples + n_parts - 1) // n_parts
    for p in prange(n_parts):
        part = parts[p]
        part[:] = 0
        for n in range(p * size, min((p + 1) * size, n_samples)):
            for y in range(out_h):
                for x in range(out_w):
                    for i in range(kh):
                        for j in range(kw):
                            for c in range(channels):
                                v = padded[n, y + i, x + j, c]
                                for f in range(filters):
                                    part[i, j, c, f] += v * dout[n, y, x, f]


def _routes(side: int, channels: int, filters: int, pad: int) -> dict[str, Callable[[], object]]:
    """Each route at one conv's shape, checked against Conv2D; name -> a call to time."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, side, side, channels), dtype=np.float32)
    W = rng.standard_normal((3, 3, channels, filters), dtype=np.float32) * 0.1
    layer = Conv2D(W, np.zeros(filters, np.float32), 1, pad)
    out = layer.forward(x, training=True)
    dout = rng.standard_normal(out.shape, dtype=np.float32)
    dx = layer.backward(dout).copy()
    padded, cols = layer._prepare(x)
    m, k = cols.shape
    a, b, c = (np.ones((m, k), np.float32), np.ones((k, filters), np.float32),
               np.ones((m, filters), np.float32))
    mine, dpadded = np.empty_like(out), np.zeros_like(padded)
    Wt, parts = np.ascontiguousarray(W.transpose(0, 1, 3, 2)), np.empty((PARTS, *W.shape),
                                                                         np.float32)
    direct_forward(padded, W, mine)
    direct_dx(dout, Wt, dpadded)
    direct_dw(padded, dout, parts)
    scale = float(np.abs(out).max())
    assert np.abs(mine - out).max() < 1e-4 * scale, "direct forward differs from Conv2D"
    assert np.allclose(dpadded[:, pad:pad + side, pad:pad + side], dx, atol=1e-4 * scale)
    assert np.allclose(parts.sum(0), layer.grads["W"], rtol=1e-3, atol=1e-3 * scale)
    dcols = cols.reshape(BATCH, *out.shape[1:3], 3, 3, channels)

    def scatter() -> None:
        dpadded.fill(0)
        kernels.col2im(dcols, dpadded, 1, 1)

    def direct_input_grad() -> None:
        dpadded.fill(0)
        direct_dx(dout, Wt, dpadded)

    return {
        "GEMMs (ceiling)": lambda: (a @ b, a.T @ c, c @ b.T),
        "Conv2D forward": lambda: layer.forward(x, training=True),
        "Conv2D backward": lambda: layer.backward(dout),
        "  im2col fill": lambda: layer._fill(padded, cols, 0, BATCH),  # Conv2D's own
        "  col2im": scatter,
        "direct forward": lambda: direct_forward(padded, W, mine),
        "direct dX": direct_input_grad,
        "direct dW": lambda: (direct_dw(padded, dout, parts), parts.sum(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of every route")
    parser.add_argument("--quick", action="store_true",
                        help="one round: checks that the script runs (make test); no figures")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    shapes = [_routes(*conv) for conv in CONVS]
    names = list(shapes[0])
    times = [{name: [] for name in names} for _ in shapes]
    for _ in range(args.rounds):
        for routes, timing in zip(shapes, times, strict=True):
            for name, call in routes.items():
                start = time.perf_counter()
                call()
                timing[name].append(time.perf_counter() - start)
    medians = [{name: float(np.median(values)) * 1e3 for name, values in timing.items()}
               for timing in times]
    print(f"ms per call, medians of {args.rounds} rounds, batch {BATCH}, float32")
    print(f"{'route':18s}" + "".join(f"{f'{s}x{s}x{c}>{f}':>13s}" for s, c, f, _ in CONVS)
          + f"{'total':>9s}")
    for name in names:
        row = [median[name] for median in medians]
        print(f"{name:18s}" + "".join(f"{value:13.2f}" for value in row) + f"{sum(row):9.2f}")
    total = {name: sum(median[name] for median in medians) for name in names}
    ours = total["Conv2D forward"] + total["Conv2D backward"]
    direct = total["direct forward"] + total["direct dX"] + total["direct dW"]
    print(f"Conv2D / its GEMMs: {ours / total['GEMMs (ceiling)']:.2f}x; direct / GEMMs: "
          f"{direct / total['GEMMs (ceiling)']:.2f}x; direct / Conv2D: {direct / ours:.2f}x")


if __name__ == "__main__":
    main()
