"""Keras on its backend (TensorFlow by default; JAX with `backend: jax`), imported once with
the settings every Keras module here needs: import `keras` (and, on TensorFlow, `tf`) from this
module, never directly.

Keras picks its backend once per process, from `KERAS_BACKEND`, when it is first imported: the
train stage sets it from params.yaml before it loads a Keras model
(`KerasFields.environment`, nnlab/models/keras/section.py). On JAX, TensorFlow is never
imported and `tf` is None.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from nnlab.core.errors import DeviceError
from nnlab.core.layout import user_cache, writable

# Hide TensorFlow's C++ INFO/WARNING logs (lines printed before absl starts still show).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

BACKEND: str = keras.backend.backend()
tf: Any = None
if BACKEND == "tensorflow":
    tf = importlib.import_module("tensorflow")
else:
    # Keras imports TensorFlow wherever it is installed, only to seed it
    # (keras.utils.set_random_seed) or to ask whether an input is a tf.data.Dataset: 3 s and
    # 1 GB for nothing. Its lazy handle answers "not installed" instead.
    from keras.src.utils import module_utils  # noqa: E402

    module_utils.tensorflow._available = False


def _keep_compiled_steps() -> None:
    """JAX keeps what XLA compiles in the user's cache (nnlab/core/layout.py's `jax`), so
    that the evaluate stage, the next `dvc exp run` or a second model of the same shape in one
    process loads a train or predict step instead of compiling it again: the Keras model
    tests on JAX took 61 s without it and 36 s with an empty cache. Every compile is kept
    (JAX's default keeps those over 1 s: these models' are shorter), up to 1 GB. A cache the
    user chose (JAX_COMPILATION_CACHE_DIR) is left as it is."""
    import jax

    folder = user_cache("jax")
    if getattr(jax.config, "jax_compilation_cache_dir", None) or not writable(folder):
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", 2**30)


if BACKEND == "jax":
    _keep_compiled_steps()

# No Keras progress bar anywhere (MLflow's Keras flavor calls `model.predict()` with its
# default verbosity when it logs a model): the stages print their own epoch lines
# (nnlab/models/progress.py). Keras then sends those messages to Python logging at INFO level.
keras.utils.disable_interactive_logging()

GPU_INSTALL = "`make install ACCEL=cuda` installs the CUDA builds (Linux, an NVIDIA driver)"


def check_backend(wanted: str, model: str) -> None:
    """Keras runs one backend per process: a second one cannot be loaded beside it."""
    if wanted != BACKEND:
        raise RuntimeError(
            f"{model}.backend={wanted!r}, but Keras already runs on {BACKEND} in this process "
            f"(KERAS_BACKEND); train each backend in its own process (each dvc stage is one)")


def gpus() -> list[str]:
    """The GPUs this backend can use ("gpu:0", ...). On TensorFlow, the physical devices: listing
    them does not start TensorFlow's runtime, whose thread counts are set later (fit)."""
    if BACKEND == "tensorflow":
        return [f"gpu:{index}" for index, _ in
                enumerate(tf.config.list_physical_devices("GPU"))]
    import jax

    try:
        return [f"gpu:{device.id}" for device in jax.devices("gpu")]
    except RuntimeError:  # "Unknown backend gpu": no CUDA plugin, or JAX_PLATFORMS=cpu
        return []


def device_kind(device: str, model: str) -> str:
    """The kind of device a fit runs on for params' `device`: "gpu" for `gpu` (an error
    naming what is missing when there is none) and for `auto` when there is one, else "cpu"."""
    found = gpus() if device != "cpu" else []
    if device == "gpu" and not found:
        raise DeviceError(f"{model}.device='gpu', but Keras on {BACKEND} sees no GPU "
                          f"({_gpu_build()}); {GPU_INSTALL}, or set {model}.device=auto")
    return "gpu" if found else "cpu"


def local_devices(kind: str) -> list[str]:
    """Every local device of `kind` ("cpu:0", "cpu:1", ...): the GPUs, or the CPU's virtual
    devices (JAX's XLA_FLAGS=--xla_force_host_platform_device_count=N, or TensorFlow's logical
    devices), which is how data parallelism is tested without GPUs. Starts TensorFlow."""
    return list(keras.distribution.list_devices(kind))


def _gpu_build() -> str:
    if BACKEND == "jax":
        import jax

        return f"JAX {jax.__version__} without a CUDA plugin, or no CUDA device visible"
    built = "with" if tf.test.is_built_with_cuda() else "without"
    return f"TensorFlow {tf.__version__} built {built} CUDA, or no CUDA device visible"


def describe(kind: str, count: int = 1) -> str:
    """'cpu', or 'gpu: NVIDIA H200' ('2 x gpu: ...' for several), for the console and the run."""
    name = kind
    if kind == "gpu":
        try:
            if BACKEND == "jax":
                import jax

                name = f"gpu: {jax.devices('gpu')[0].device_kind}"
            else:
                details = tf.config.experimental.get_device_details(
                    tf.config.list_physical_devices("GPU")[0])
                name = f"gpu: {details.get('device_name', 'GPU')}"
        except (RuntimeError, ValueError, IndexError):
            pass
    return name if count == 1 else f"{count} x {name}"


__all__ = ["BACKEND", "keras", "tf", "check_backend", "describe", "local_devices",
           "device_kind"]
