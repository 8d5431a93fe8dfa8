"""How and where a Keras fit computes: seeds and determinism, mixed precision, and data
parallelism over every local device (docs/devices.md)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from nnlab.core.errors import DeviceError
from nnlab.models.keras.backend import BACKEND, keras, local_devices, tf

# Fixed thread counts: with op determinism, same params + seed give identical weights.
THREADS = 2


def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and the backend; on TensorFlow, make its ops deterministic and fix
    the thread counts. TensorFlow accepts thread counts only before its runtime starts: when
    it has already started with other counts (a second model in one process), say so, since
    results may then differ from a fresh `dvc repro`."""
    keras.utils.set_random_seed(seed)
    if BACKEND != "tensorflow":
        return
    tf.config.experimental.enable_op_determinism()
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads()) == (THREADS, 1):
        return
    try:
        threading.set_intra_op_parallelism_threads(THREADS)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as error:
        warnings.warn(f"TensorFlow's thread counts stay at intra="
                      f"{threading.get_intra_op_parallelism_threads()}, inter="
                      f"{threading.get_inter_op_parallelism_threads()} ({error}); results may "
                      f"differ from a fresh process, which uses {THREADS} and 1", stacklevel=2)


@contextlib.contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """Layers built inside compute in bfloat16 with float32 variables (`mixed_precision`);
    the builders keep the logits in float32. The global policy is put back after."""
    if not mixed:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def devices(kind: str, parallel: bool) -> list[str]:
    """The devices a fit runs on: one of `kind` ("cpu" or "gpu"), or with `parallel` on JAX
    every one (the GPUs, or the CPU's virtual devices: XLA_FLAGS=
    --xla_force_host_platform_device_count=N), of every process when several train together
    (nnlab/models/keras/cluster.py). TensorFlow refuses `parallel` in the fit."""
    return local_devices(kind) if parallel and BACKEND == "jax" else [f"{kind}:0"]


@contextlib.contextmanager
def data_parallel(model: str, params: Any, devices: list[str]) -> Iterator[None]:
    """Builds, compiles and fits inside: with `data_parallel`, each batch split over
    `devices` by Keras's DataParallel (JAX).

    Not on TensorFlow: a MirroredStrategy over two logical CPUs trained the cnn to losses
    1% away from one device's after 4 epochs of SGD (JAX's: within 2e-4), its first batch's
    loss already different; docs/devices.md says so."""
    if not (params.data_parallel or params.processes > 1):
        yield
        return
    if BACKEND != "jax":
        raise DeviceError(f"{model}.data_parallel=true runs on the JAX backend only; "
                          f"set {model}.backend=jax, or data_parallel=false")
    if params.batch_size % len(devices):
        how = ("data_parallel" if params.processes == 1 else
               f"processes={params.processes}")
        raise ValueError(f"{model}.batch_size={params.batch_size}: {how} splits each "
                         f"batch over {len(devices)} devices; use a multiple of {len(devices)}")
    # Several processes: each feeds its own rows of every batch (inputs.py), as NumPy.
    with keras.distribution.DataParallel(devices=devices,
                                         auto_shard_dataset=params.processes == 1).scope():
        yield
