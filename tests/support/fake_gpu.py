"""A stand-in for CuPy on a machine without a GPU: NumPy underneath, with CuPy's one rule that
catches a missing transfer. Its arrays ("device arrays") refuse to compute with NumPy arrays
and refuse to turn into one unless asked (`asnumpy`), as CuPy's do.

The NumPy networks run on it exactly as they would on CuPy (nnlab/models/numpy/arrays.py):
every host array that reaches a device computation without `np.asarray` raises TypeError.
What it cannot catch: NumPy's own `numpy.asarray(device_array)` returns the array under it
(a subclass is not asked), where CuPy would refuse. The engine reaches device arrays only
through arrays.np and to_host, never through numpy itself.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy

# CuPy's functions that take host data and put it on the device.
TO_DEVICE = {"asarray", "array", "ascontiguousarray"}


class DeviceArray(numpy.ndarray):
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(value) for value in kwargs["out"])
        result = getattr(ufunc, method)(*(_plain(value) for value in inputs), **kwargs)
        return _device(result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        return _device(func(*_plain_tree(args), **_plain_tree(kwargs)))

    def __getitem__(self, key: Any) -> Any:
        return _device(_plain(self)[_plain_tree(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        # CuPy copies a host value into a device array; its indices must be on the device
        value = value.view(numpy.ndarray) if isinstance(value, DeviceArray) else value
        _plain(self)[_plain_tree(key)] = value


def _plain(value: Any) -> Any:
    """A device array as the NumPy array under it; a host array is refused."""
    if isinstance(value, DeviceArray):
        return value.view(numpy.ndarray)
    if type(value) is numpy.ndarray:
        raise TypeError(f"a host array {value.shape} in a device computation (np.asarray it)")
    return value


def _plain_tree(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return type(value)(_plain_tree(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain_tree(item) for key, item in value.items()}
    return _plain(value)


def _device(value: Any) -> Any:
    if type(value) is numpy.ndarray:
        return value.view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_device(item) for item in value)
    return value


def _wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if name in TO_DEVICE:  # host data in: a copy on the "device"
            host = args[0].view(numpy.ndarray) if isinstance(args[0], DeviceArray) else args[0]
            return _device(numpy.array(getattr(numpy, name)(host, *args[1:], **kwargs)))
        return _device(function(*_plain_tree(args), **_plain_tree(kwargs)))

    return call


class FakeCupy(types.ModuleType):
    """`numpy`'s names, each function taking and giving device arrays; `asnumpy` copies back."""

    def __init__(self) -> None:
        super().__init__("fake_cupy")
        self.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
            as_strided=lambda array, shape, strides: _device(
                numpy.lib.stride_tricks.as_strided(_plain(array), shape, strides))))

    def __getattr__(self, name: str) -> Any:
        value = getattr(numpy, name)
        if callable(value) and not isinstance(value, type) and not isinstance(value, numpy.ufunc):
            return _wrap(name, value)
        return value

    @staticmethod
    def asnumpy(array: Any) -> numpy.ndarray:
        """A host copy; a host array as it is (cupy.asnumpy takes both)."""
        return numpy.array(array.view(numpy.ndarray)) if isinstance(array, DeviceArray) \
            else numpy.asarray(array)
