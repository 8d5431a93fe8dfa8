"""Convolution layers, channels-last as Keras and the stored images: x is (N, H, W, C).

Conv2D turns a convolution into one GEMM over im2col columns ("Deep Learning from Scratch",
ch. 7): every kh x kw x C window of the padded input becomes one row of `cols`, so
out = cols @ W. The columns are filled by one copy from a strided view of the input (no
Python loop over the window), into a buffer kept per input shape; backward is two GEMMs
(dW = cols.T @ dout, dcols = dout @ W.T) and col2im, a compiled loop that adds each
window's gradient back (kernels.py).
"""

from __future__ import annotations

import math

from numpy.typing import NDArray

from nnlab.core import stops
from nnlab.models.numpy.arrays import as_strided, kernels, np  # NumPy or CuPy (arrays.py)
from nnlab.models.numpy.layers import Array, BatchNorm, Layer

PADDINGS = ("same", "valid")


def _pixels(padding: str | int) -> bool:
    """True for a number of pixels; ValueError for anything but those and PADDINGS."""
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return True
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; choose one of: {', '.join(PADDINGS)}, "
                         "or a number of pixels")
    return False


def _pads(size: int, kernel: int, stride: int, padding: str | int) -> tuple[int, int, int]:
    """(output size, padding before, padding after) along one axis, as Keras computes them:
    'same' gives ceil(size / stride) outputs and puts the odd pixel of padding after. An int
    pads that many zeros on both sides, as the source tutorials' `pad`."""
    if _pixels(padding) and isinstance(padding, int):
        if size + 2 * padding < kernel:
            raise ValueError(f"a {kernel}-wide window does not fit in {size} pixels padded "
                             f"by {padding}")
        return (size + 2 * padding - kernel) // stride + 1, padding, padding
    if padding == "valid":
        if size < kernel:
            raise ValueError(f"a {kernel}-wide window does not fit in {size} pixels with "
                             "padding='valid'; use padding='same' or a larger input")
        return (size - kernel) // stride + 1, 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


class Conv2D(Layer):
    """2-D convolution: W (kh, kw, C, F), Keras's kernel layout, and b (F,) or None.

    The batch goes through in chunks of about CHUNK_BYTES of columns: each chunk's columns are
    filled and multiplied right away, while they are still in the CPU's cache (a whole
    batch's columns are 45 MB at the DeepConvNet's 16-filter convs on 28x28 inputs).
    Backward goes chunk by chunk too: dW is summed over the chunks, and each chunk's dcols is
    computed into its columns and added back by col2im while they are hot. What it gains is
    in benchmarks/README.md."""

    CHUNK_BYTES = 8 << 20
    KEPT_SHAPES = 4  # buffers kept for the last input shapes: training's and validation's

    def __init__(self, W: Array, b: Array | None, stride: int = 1, padding: str | int = "same",
                 input_grad: bool = True) -> None:
        super().__init__()
        if W.ndim != 4:
            raise ValueError(f"Conv2D weights must be (kh, kw, C, F); Received: {W.shape}")
        if stride < 1:
            raise ValueError(f"stride must be at least 1; Received: stride={stride}")
        _pixels(padding)  # a bad padding fails here, not at the first forward
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.stride, self.padding, self.input_grad = stride, padding, input_grad
        # per input shape, allocated once and reused each step: the zero-bordered padded
        # input, the columns (N * out_h * out_w, kh * kw * C), the padded input's gradient
        self._buffers: dict[tuple[int, ...], tuple[Array, Array]] = {}
        self._dx: dict[tuple[int, ...], Array] = {}
        self._ones: dict[int, Array] = {}  # rows -> ones, for the bias gradient's GEMV
        self._cols: Array | None = None
        self._geometry: tuple[int, ...] = ()

    def _chunks(self, n: int, row_bytes: int) -> list[tuple[int, int]]:
        """[(first sample, end sample)] of chunks of about CHUNK_BYTES of columns each."""
        step = max(1, self.CHUNK_BYTES // max(row_bytes, 1))
        return [(start, min(start + step, n)) for start in range(0, n, step)]

    def _prepare(self, x: Array) -> tuple[Array, Array]:
        """Copy x into the padded buffer; (padded, cols) for its shape."""
        kh, kw, channels, _ = self.params["W"].shape
        n, height, width, _ = x.shape
        out_h, top, bottom = _pads(height, kh, self.stride, self.padding)
        out_w, left, right = _pads(width, kw, self.stride, self.padding)
        if x.shape not in self._buffers:
            while len(self._buffers) >= self.KEPT_SHAPES:  # bounded, whatever sizes come
                oldest = next(iter(self._buffers))
                del self._buffers[oldest]
                self._dx.pop(oldest, None)
            padded = np.zeros((n, height + top + bottom, width + left + right, channels),
                              x.dtype)
            self._buffers[x.shape] = (padded, np.empty((n * out_h * out_w, kh * kw * channels),
                                                       x.dtype))
        padded, cols = self._buffers[x.shape]
        padded[:, top:top + height, left:left + width] = x  # the border stays zero
        self._geometry = (n, out_h, out_w, kh, kw, channels, top, left, height, width)
        return padded, cols

    def scratch_bytes(self, x: Array) -> int:
        return sum(array.nbytes for array in self._buffers.get(x.shape, ()))

    def _fill(self, padded: Array, cols: Array, start: int, end: int) -> Array:
        """im2col of samples start:end into their rows of cols: one copy from a strided view
        (N, out_h, out_w, kh, kw, C) of the padded input, no Python loop over the window."""
        _, out_h, out_w, kh, kw, channels = self._geometry[:6]
        part = padded[start:end]
        s_n, s_h, s_w, s_c = part.strides
        windows = as_strided(part, (end - start, out_h, out_w, kh, kw, channels),
                             (s_n, s_h * self.stride, s_w * self.stride, s_h, s_w, s_c))
        rows = cols[start * out_h * out_w:end * out_h * out_w]
        np.copyto(rows.reshape(windows.shape), windows)
        return rows

    def _columns(self, x: Array) -> Array:
        """The im2col matrix (N * out_h * out_w, kh * kw * C) of x (N, H, W, C)."""
        padded, cols = self._prepare(x)
        return self._fill(padded, cols, 0, x.shape[0])

    def spec(self) -> list[object]:
        return ["conv2d", self.stride, self.padding]

    def forward(self, x: Array, training: bool = False) -> Array:
        W = self.params["W"]
        filters = W.shape[3]
        W2 = W.reshape(-1, filters)
        padded, cols = self._prepare(x)
        n, out_h, out_w = self._geometry[:3]
        out = np.empty((n * out_h * out_w, filters), x.dtype)
        pixels = out_h * out_w
        for start, end in self._chunks(n, pixels * cols.shape[1] * cols.itemsize):
            rows = self._fill(padded, cols, start, end)
            np.matmul(rows, W2, out=out[start * pixels:end * pixels])  # (rows, F)
        if "b" in self.params:
            out += self.params["b"]
        self._cols = cols
        return out.reshape(n, out_h, out_w, filters)

    def backward(self, dout: Array) -> Array:
        if self._cols is None:
            raise RuntimeError("Conv2D.backward() called before forward()")
        W = self.params["W"]
        filters = W.shape[3]
        W2 = W.reshape(-1, filters)
        d2 = dout.reshape(-1, filters)  # (N * out_h * out_w, F)
        cols = self._cols
        if "b" in self.grads:  # a GEMV, not np.sum over axis 0 (slow on 16 columns)
            count = d2.shape[0]
            if count not in self._ones:
                self._ones[count] = np.ones(count, d2.dtype)
            np.matmul(self._ones[count], d2, out=self.grads["b"])
        n, out_h, out_w, kh, kw, channels, top, left, height, width = self._geometry
        shape = (n, height, width, channels)
        dx = None
        if self.input_grad:
            if shape not in self._dx:
                self._dx[shape] = np.empty_like(self._buffers[shape][0])
            dx = self._dx[shape]  # the padded input's gradient, kept per shape like cols
        gW = self.grads["W"].reshape(-1, filters)
        part = np.empty_like(gW)
        pixels = out_h * out_w
        for index, (start, end) in enumerate(
                self._chunks(n, pixels * cols.shape[1] * cols.itemsize)):
            rows = cols[start * pixels:end * pixels]
            grads = d2[start * pixels:end * pixels]
            np.matmul(rows.T, grads, out=gW if index == 0 else part)  # dW = cols.T @ dout
            if index:
                gW += part
            if dx is None:
                continue
            # dcols goes where this chunk's cols were: dW has read them, and the next forward
            # refills them.
            np.matmul(grads, W2.T, out=rows)
            dx[start:end].fill(0)
            with stops.deferred():  # the first call compiles col2im
                kernels.col2im(rows.reshape(end - start, out_h, out_w, kh, kw, channels),
                               dx[start:end], self.stride, self.stride)
        if dx is None:
            return dout[:, :0]  # never used: nobody needs the gradient of the input pixels
        return dx[:, top:top + height, left:left + width]


class MaxPool2D(Layer):
    """Max over non-overlapping size x size windows (stride = size), as Keras's
    MaxPooling2D(size). 'same' pads with -inf as Keras does (the odd pixel after), so every
    pixel is in a window; 'valid' drops the pixels past the last whole window. The gradient
    goes to the window's first largest value, as in Keras."""

    def __init__(self, size: int = 2, padding: str = "valid") -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"pool size must be at least 1; Received: size={size}")
        _pixels(padding)
        self.size, self.padding = size, padding
        self._argmax: NDArray[np.intp] | None = None
        self._shape: tuple[int, ...] = ()

    def spec(self) -> list[object]:
        return ["max_pool", self.size, self.padding]

    def forward(self, x: Array, training: bool = False) -> Array:
        n, height, width, channels = x.shape
        out_h, top, _ = _pads(height, self.size, self.size, self.padding)
        out_w, left, _ = _pads(width, self.size, self.size, self.padding)
        if self._argmax is None or self._argmax.shape != (n, out_h, out_w, channels):
            self._argmax = np.empty((n, out_h, out_w, channels), np.int64)
        out = np.empty((n, out_h, out_w, channels), x.dtype)
        with stops.deferred():  # the first call compiles it
            kernels.max_pool(np.ascontiguousarray(x), out, self._argmax, self.size, top, left)
        self._shape = (n, height, width, channels)
        return out

    def backward(self, dout: Array) -> Array:
        if self._argmax is None:
            raise RuntimeError("MaxPool2D.backward() called before forward()")
        dx = np.zeros(self._shape, dout.dtype)
        with stops.deferred():
            kernels.max_pool_backward(np.ascontiguousarray(dout), self._argmax, dx)
        return dx


class Flatten(Layer):
    """(N, H, W, C) -> (N, H * W * C), in Keras's order (channels last)."""

    def spec(self) -> list[object]:
        return ["flatten"]

    def forward(self, x: Array, training: bool = False) -> Array:
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: Array) -> Array:
        return dout.reshape(self._shape)


class BatchNorm2D(BatchNorm):
    """Batch norm over channels: each channel's mean and variance over N, H and W, as Keras's
    BatchNormalization() after a Conv2D. gamma and beta are (C,)."""

    def forward(self, x: Array, training: bool = False) -> Array:
        self._shape = x.shape
        return super().forward(x.reshape(-1, x.shape[-1]), training).reshape(x.shape)

    def backward(self, dout: Array) -> Array:
        return super().backward(dout.reshape(-1, dout.shape[-1])).reshape(self._shape)
