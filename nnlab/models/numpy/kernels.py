"""The optimizers' update rules as fused loops: one pass over memory per update.

Written with NumPy's ufuncs, Adam is 12 passes over every weight (each `+=`, `*` or `sqrt`
is one): over the 1.86M float32 weights of 784-1024-1024-10 it took 2.7x its memory floor.
Here each rule is one loop that reads every array once and writes each changed array once,
compiled by numba: 1.1x (`benchmarks/numpy_vs_keras.py` prints both figures).

- The arithmetic follows optimizers.py's formulas operation by operation, in the arrays'
  own dtype (the caller passes scalars of that dtype): the result is bit-identical to the
  same rule written with NumPy ufuncs (update_rules.py's reference;
  tests/unit/models/test_update_rules.py checks it).
- `error_model="numpy"`: a division by zero gives inf as in NumPy, instead of a Python
  exception whose check would stop the loop from being vectorised.
- `cache=True`: compiled once per dtype, then loaded from the user's cache, shared by every
  copy of the project (kernel_cache.py).

Every array is 1-D and contiguous; `param` and the state arrays are changed in place.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nnlab.models.numpy import kernel_cache

kernel_cache.install()
fused = njit(cache=True, error_model="numpy")


@fused
def sgd(param, grad, lr):
    for i in range(param.size):
        param[i] -= grad[i] * lr


@fused
def momentum(param, grad, velocity, momentum, lr):
    for i in range(param.size):
        v = velocity[i] * momentum - grad[i] * lr
        velocity[i] = v
        param[i] += v


@fused
def nesterov(param, grad, velocity, momentum, lr):
    for i in range(param.size):
        lr_grad = grad[i] * lr
        v = velocity[i] * momentum - lr_grad
        velocity[i] = v
        param[i] = (param[i] - lr_grad) + v * momentum


@fused
def adagrad(param, grad, squares, lr, epsilon):
    for i in range(param.size):
        g = grad[i]
        h = squares[i] + g * g
        squares[i] = h
        param[i] -= g / (np.sqrt(h) + epsilon) * lr


@fused
def rmsprop(param, grad, mean_square, lr, one_minus_beta2, epsilon):
    for i in range(param.size):
        g = grad[i]
        s = mean_square[i]
        s = s + (g * g - s) * one_minus_beta2
        mean_square[i] = s
        param[i] -= g / (np.sqrt(s) + epsilon) * lr


@fused
def adam(param, grad, m, v, alpha, one_minus_beta1, one_minus_beta2, epsilon):
    for i in range(param.size):
        g = grad[i]
        m_i = m[i]
        m_i = m_i + (g - m_i) * one_minus_beta1
        m[i] = m_i
        v_i = v[i]
        v_i = v_i + (g * g - v_i) * one_minus_beta2
        v[i] = v_i
        param[i] -= m_i / (np.sqrt(v_i) + epsilon) * alpha


@fused
def col2im(dcols, dx, stride_h, stride_w):
    """Add each window's gradient back where the window read its input: dcols is
    (N, out_h, out_w, kh, kw, C), dx the (N, H_padded, W_padded, C) input gradient, zeroed by
    the caller. Windows overlap when the stride is below the kernel size: they add up."""
    n_samples, out_h, out_w, kh, kw, channels = dcols.shape
    for n in range(n_samples):
        for y in range(out_h):
            for x in range(out_w):
                for i in range(kh):
                    for j in range(kw):
                        row, column = y * stride_h + i, x * stride_w + j
                        for c in range(channels):
                            dx[n, row, column, c] += dcols[n, y, x, i, j, c]


@fused
def max_pool(x, out, argmax, size, top, left):
    """out[n, oy, ox, c]: the max of x (N, H, W, C) over the size x size window at
    (oy * size - top, ox * size - left), pixels outside x left out (as -inf padding);
    argmax: the flat pixel (y * W + x) of its first largest value, in row-major order."""
    n_samples, out_h, out_w, channels = out.shape
    height, width = x.shape[1], x.shape[2]
    for n in range(n_samples):
        for oy in range(out_h):
            for ox in range(out_w):
                for c in range(channels):
                    out[n, oy, ox, c] = -np.inf
                    argmax[n, oy, ox, c] = -1
                for i in range(size):
                    row = oy * size + i - top
                    if row < 0 or row >= height:
                        continue
                    for j in range(size):
                        column = ox * size + j - left
                        if column < 0 or column >= width:
                            continue
                        for c in range(channels):
                            value = x[n, row, column, c]
                            if value > out[n, oy, ox, c] or argmax[n, oy, ox, c] < 0:
                                out[n, oy, ox, c] = value
                                argmax[n, oy, ox, c] = row * width + column


@fused
def max_pool_backward(dout, argmax, dx):
    """dx (N, H, W, C), zeroed by the caller: each window's gradient to its argmax pixel."""
    n_samples, out_h, out_w, channels = dout.shape
    width = dx.shape[2]
    for n in range(n_samples):
        for oy in range(out_h):
            for ox in range(out_w):
                for c in range(channels):
                    pixel = argmax[n, oy, ox, c]
                    dx[n, pixel // width, pixel % width, c] += dout[n, oy, ox, c]
