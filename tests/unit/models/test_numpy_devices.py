"""numpy_dnn and numpy_cnn on a GPU (CuPy): the array-module switch, the GPU kernels, and
the whole training on a stand-in device (tests/support/fake_gpu.py) where CuPy and a GPU are
missing; on a real GPU, the same comparison on CuPy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnlab.core.errors import DeviceError
from nnlab.models.base import load_model, new_model
from nnlab.models.numpy import array_kernels, arrays, kernels
from tests.support.fake_gpu import DeviceArray, FakeCupy
from tests.support.helpers import make_images, project_params


@pytest.fixture(autouse=True)
def _back_on_numpy() -> Iterator[None]:
    yield
    arrays.use_module(np)


def _rng_arrays(count: int, size: int = 1000, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size).astype(np.float32) for _ in range(count)]


# The update rules, on NumPy, against the compiled loops: tests/unit/models/test_update_rules.py.


@pytest.mark.parametrize(("shape", "size", "top", "left"), [
    ((2, 8, 8, 3), 2, 0, 0), ((2, 7, 5, 2), 2, 0, 0), ((1, 9, 9, 1), 3, 0, 0)])
def test_the_gpu_max_pool_and_col2im_are_the_compiled_loops(
        shape: tuple[int, ...], size: int, top: int, left: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, :2] = 5.0  # a tie: the first largest wins in both
    out_h, out_w = -(-shape[1] // size), -(-shape[2] // size)  # 'same': every pixel pooled
    results = []
    for module in (kernels, array_kernels):
        out = np.empty((shape[0], out_h, out_w, shape[3]), np.float32)
        argmax = np.empty(out.shape, np.int64)
        module.max_pool(x, out, argmax, size, top, left)
        dout = np.arange(out.size, dtype=np.float32).reshape(out.shape)
        dx = np.zeros(shape, np.float32)
        module.max_pool_backward(dout, argmax, dx)
        results.append((out, argmax, dx))
    for compiled, expression in zip(*results, strict=True):
        np.testing.assert_array_equal(expression, compiled)

    dcols = rng.standard_normal((2, 4, 4, 3, 3, 2)).astype(np.float32)
    sums = []
    for module in (kernels, array_kernels):
        dx = np.zeros((2, 6, 6, 2), np.float32)  # 4 windows of 3, stride 1: they overlap
        module.col2im(dcols, dx, 1, 1)
        sums.append(dx)
    np.testing.assert_allclose(sums[1], sums[0], rtol=1e-5, atol=1e-6)


SMALL = {
    "numpy_dnn": {"epochs": 4, "hidden_layers": [16], "batch_norm": True, "dropout": 0.2,
                  "augment_shift": 0.0},
    "numpy_cnn": {"epochs": 3, "blocks": [{"filters": 4, "convs": 1}], "dense_units": [8],
                  "batch_norm": True, "augment_shift": 0.0},
}


class _HostCheckpoint:
    """Keeps the last epoch's state; a device array in it would not save to a file."""

    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}

    def saved(self) -> None:
        return None

    def save(self, arrays_: dict[str, Any], meta: dict[str, Any]) -> None:
        assert all(type(array) is np.ndarray for array in arrays_.values())
        self.arrays = arrays_


def _train(name: str, module: Any, tmp_path: Path) -> tuple[list[dict[str, float]], Any]:
    """Fit on `module` (numpy, the stand-in, or cupy), with checkpoints; save; load on NumPy."""
    images, labels = make_images(12, 3, seed=1)
    params = project_params({name: SMALL[name] | {"device": "cpu"}})
    model = new_model(name, params.model_params(name), seed=0)
    arrays.use_module(module)  # after the classifier chose the CPU for device: cpu

    checkpoint = _HostCheckpoint()
    rows = model.fit((images, labels), (images, labels), 3, checkpoint=checkpoint)
    assert checkpoint.arrays  # every epoch's state reached the host
    weights = model.model.flat_params  # where the network computed
    assert (type(weights) is np.ndarray) == (module is np), type(weights)
    probabilities = model.predict_proba(images)
    assert type(probabilities) is np.ndarray
    model.save(tmp_path / module.__name__)
    arrays.use_module(np)
    loaded = load_model(tmp_path / module.__name__, name)
    np.testing.assert_allclose(loaded.predict_proba(images), probabilities, rtol=1e-4, atol=1e-6)
    return rows, probabilities


def _same_training(name: str, module: Any, tmp_path: Path, loss_rtol: float, rtol: float,
                   atol: float) -> None:
    """A training on `module` ends where NumPy's does: each epoch's losses, then the
    probabilities."""
    cpu_rows, cpu_probabilities = _train(name, np, tmp_path)
    rows, probabilities = _train(name, module, tmp_path)
    for cpu, row in zip(cpu_rows, rows, strict=True):
        np.testing.assert_allclose([row["loss"], row["val_loss"]],
                                   [cpu["loss"], cpu["val_loss"]], rtol=loss_rtol)
    np.testing.assert_allclose(probabilities, cpu_probabilities, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["numpy_dnn", "numpy_cnn"])
def test_a_network_trained_on_the_stand_in_device_ends_where_numpy_does(
        name: str, tmp_path: Path) -> None:
    """The whole loop (init, dropout, batch norm, the optimizer, evaluation, checkpoints,
    save) on arrays that refuse every host array not moved on purpose: the same losses as
    NumPy's to float32 rounding."""
    _same_training(name, FakeCupy(), tmp_path, loss_rtol=1e-4, rtol=1e-3, atol=1e-5)


def test_the_stand_in_refuses_what_cupy_refuses() -> None:
    device = FakeCupy().asarray(np.ones(3, np.float32))
    assert isinstance(device, DeviceArray)
    with pytest.raises(TypeError, match="host array"):
        device + np.ones(3, np.float32)
    assert isinstance(device * device, DeviceArray)


@pytest.mark.parametrize("name", ["numpy_dnn", "numpy_cnn"])
def test_gpu_without_cupy_is_a_one_line_error(name: str) -> None:
    params = project_params({name: {"device": "gpu"}})
    try:
        import cupy  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        missing = "CuPy is not installed"
    else:
        pytest.skip("CuPy is installed: the error is for machines without it")
    with pytest.raises(DeviceError, match=(
            rf"^{name}\.device='gpu', but {missing}; `make install ACCEL=cuda` installs CuPy "
            rf"\(Linux, an NVIDIA driver\), or set {name}\.device=auto$")):
        new_model(name, params.model_params(name), seed=0)


def test_auto_takes_the_cpu_without_a_gpu_and_says_so() -> None:
    model = new_model("numpy_cnn", project_params().model_params("numpy_cnn"), seed=0)
    if arrays.on_cpu():
        assert model.runtime() == {"backend": "numpy", "device": "cpu"}
    else:
        assert model.runtime()["device"].startswith("gpu: ")


def _gpu_cupy() -> Any:
    try:
        import cupy  # type: ignore[import-not-found]

        return cupy if cupy.cuda.runtime.getDeviceCount() else None
    except Exception:  # noqa: BLE001  (not installed, or no driver or device)
        return None


@pytest.mark.skipif(_gpu_cupy() is None, reason="needs CuPy and an NVIDIA GPU "
                    "(`make install ACCEL=cuda` on a machine with one)")
@pytest.mark.parametrize("name", ["numpy_dnn", "numpy_cnn"])
def test_on_a_real_gpu_cupy_ends_where_numpy_does(name: str, tmp_path: Path) -> None:
    _same_training(name, _gpu_cupy(), tmp_path, loss_rtol=1e-3, rtol=1e-2, atol=1e-4)
