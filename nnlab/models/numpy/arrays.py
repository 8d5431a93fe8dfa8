"""Where the NumPy networks compute: NumPy on the CPU, or CuPy on an NVIDIA GPU (params'
`device` key). The engine's files import `np` from here instead of NumPy itself, a one-line
switch: their code reads as plain NumPy, and runs on CuPy's identical API when a GPU is in use.

    from nnlab.models.numpy.arrays import kernels, np

- `np` forwards every attribute to the chosen module (NumPy until `use` picks CuPy).
- `kernels` forwards to the update rules, max-pooling and col2im: numba's compiled loops on
  the CPU (kernels.py), the same maths as whole-array expressions on a GPU
  (array_kernels.py).
- What crosses between host and device: the data and labels go in one batch at a time
  (`np.asarray`), probabilities, losses and saved weights come out (`to_host`). The random
  generator stays NumPy's on the host, so a seed draws the same weights, orders and masks on
  both, and a GPU run ends where the CPU run does, to float32 rounding.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy

from nnlab.core.errors import DeviceError
from nnlab.models.numpy import array_kernels

CUPY_INSTALL = "`make install ACCEL=cuda` installs CuPy (Linux, an NVIDIA driver)"

compiled_kernels: ModuleType
try:
    from nnlab.models.numpy import kernels as compiled_kernels
except ImportError:  # no numba (a GPU machine with CuPy only: benchmarks/gpu.py): NumPy then
    compiled_kernels = array_kernels  # runs the array expressions, slower but the same maths


class _Forward:
    """Every attribute read from `module`, looked up at each use."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


if TYPE_CHECKING:  # type-checked as NumPy: CuPy has the same API
    import numpy as np

    from nnlab.models.numpy import kernels
else:
    np = _Forward(numpy)
    kernels = _Forward(compiled_kernels)


def use_module(module: ModuleType) -> None:
    """Compute with `module` (numpy, cupy, or a test's stand-in) from now on."""
    np.module = module  # type: ignore[attr-defined]
    kernels.module = (  # type: ignore[attr-defined]
        compiled_kernels if module is numpy else array_kernels)
    array_kernels.xp = module


def on_cpu() -> bool:
    return np.module is numpy  # type: ignore[attr-defined]


def to_host(array: Any) -> numpy.ndarray:
    """A NumPy array of `array` (a copy off the GPU; the array itself on the CPU)."""
    return numpy.asarray(array) if on_cpu() else np.asnumpy(array)  # type: ignore[attr-defined]


def use(device: str, model: str) -> str:
    """Choose the module for params' `device` and say where the network computes: "cpu",
    or "gpu: <name>". `gpu` with no usable GPU is a DeviceError naming what is missing."""
    cupy, missing = (None, "") if device == "cpu" else _cupy()
    if cupy is None:
        if device == "gpu":
            raise DeviceError(f"{model}.device='gpu', but {missing}; {CUPY_INSTALL}, or set "
                              f"{model}.device=auto")
        use_module(numpy)
        return "cpu"
    use_module(cupy)
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return f"gpu: {name.decode() if isinstance(name, bytes) else name}"


def _cupy() -> tuple[ModuleType | None, str]:
    """(cupy, "") when CuPy is installed and sees a CUDA device, else (None, what is not)."""
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError: no driver, or no device visible  # noqa: BLE001
        return None, f"CuPy {cupy.__version__} finds no CUDA device ({error})"
    if not count:
        return None, f"CuPy {cupy.__version__} finds no CUDA device"
    return cupy, ""


def as_strided(array: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
    """A read-only strided view (im2col's windows); CuPy's takes no `writeable`."""
    if on_cpu():
        return numpy.lib.stride_tricks.as_strided(array, shape, strides, writeable=False)
    return np.lib.stride_tricks.as_strided(array, shape, strides)
