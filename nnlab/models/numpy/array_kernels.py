"""kernels.py's loops as whole-array expressions, for a GPU (CuPy), where numba's CPU loops
cannot run: the same names, arguments and in-place results.

Each rule follows kernels.py's formula operation by operation, so on NumPy it gives the
compiled loop's numbers (the update rules: update_rules.py's table, checked by
tests/unit/models/test_update_rules.py; the rest: test_numpy_devices.py); col2im adds
the overlapping windows in another order, equal to float32 rounding. They take their array
module from `xp`, which arrays.use_module sets.
"""

from __future__ import annotations

from typing import Any

import numpy

xp: Any = numpy  # the array module: CuPy on a GPU (set by arrays.use_module)


def sgd(param: Any, grad: Any, lr: Any) -> None:
    param -= grad * lr


def momentum(param: Any, grad: Any, velocity: Any, momentum: Any, lr: Any) -> None:
    velocity[...] = velocity * momentum - grad * lr
    param += velocity


def nesterov(param: Any, grad: Any, velocity: Any, momentum: Any, lr: Any) -> None:
    lr_grad = grad * lr
    velocity[...] = velocity * momentum - lr_grad
    param[...] = (param - lr_grad) + velocity * momentum


def adagrad(param: Any, grad: Any, squares: Any, lr: Any, epsilon: Any) -> None:
    squares += grad * grad
    param -= grad / (xp.sqrt(squares) + epsilon) * lr


def rmsprop(param: Any, grad: Any, mean_square: Any, lr: Any, one_minus_beta2: Any,
            epsilon: Any) -> None:
    mean_square[...] = mean_square + (grad * grad - mean_square) * one_minus_beta2
    param -= grad / (xp.sqrt(mean_square) + epsilon) * lr


def adam(param: Any, grad: Any, m: Any, v: Any, alpha: Any, one_minus_beta1: Any,
         one_minus_beta2: Any, epsilon: Any) -> None:
    m[...] = m + (grad - m) * one_minus_beta1
    v[...] = v + (grad * grad - v) * one_minus_beta2
    param -= m / (xp.sqrt(v) + epsilon) * alpha


def col2im(dcols: Any, dx: Any, stride_h: int, stride_w: int) -> None:
    """dcols (N, out_h, out_w, kh, kw, C) added into dx (N, H_padded, W_padded, C): one
    strided slice per kernel offset (kh * kw additions), not one per window."""
    _, out_h, out_w, kh, kw, _ = dcols.shape
    for i in range(kh):
        for j in range(kw):
            dx[:, i:i + stride_h * (out_h - 1) + 1:stride_h,
               j:j + stride_w * (out_w - 1) + 1:stride_w] += dcols[:, :, :, i, j]


def max_pool(x: Any, out: Any, argmax: Any, size: int, top: int, left: int) -> None:
    """kernels.max_pool: each window's largest value and the flat pixel (y * W + x) of its
    first largest, in row-major order; the pixels outside x count as -inf."""
    n_samples, out_h, out_w, channels = out.shape
    height, width = x.shape[1], x.shape[2]
    padded = xp.full((n_samples, out_h * size, out_w * size, channels), -xp.inf, x.dtype)
    rows, columns = min(height, out_h * size - top), min(width, out_w * size - left)
    padded[:, top:top + rows, left:left + columns] = x[:, :rows, :columns]
    windows = padded.reshape(n_samples, out_h, size, out_w, size, channels)
    windows = windows.transpose(0, 1, 3, 2, 4, 5).reshape(n_samples, out_h, out_w,
                                                           size * size, channels)
    first = windows.argmax(axis=3)  # (N, out_h, out_w, C): the first largest, as the loop
    out[...] = xp.take_along_axis(windows, first[:, :, :, None], axis=3)[:, :, :, 0]
    oy = xp.arange(out_h).reshape(1, out_h, 1, 1) * size - top
    ox = xp.arange(out_w).reshape(1, 1, out_w, 1) * size - left
    argmax[...] = (oy + first // size) * width + (ox + first % size)


def max_pool_backward(dout: Any, argmax: Any, dx: Any) -> None:
    """dx (N, H, W, C), zeroed by the caller: each window's gradient to its argmax pixel.
    The windows do not overlap, so no pixel gets two: one scatter, no additions."""
    n_samples, _, _, channels = dout.shape
    flat = dx.reshape(n_samples, -1, channels)
    flat[xp.arange(n_samples)[:, None, None], argmax.reshape(n_samples, -1, channels),
         xp.arange(channels)[None, None, :]] = dout.reshape(n_samples, -1, channels)
