"""One Keras training over several processes, one a machine, on JAX's distributed runtime
(docs/devices.md, "Several machines"): `jax.distributed.initialize` joins the processes
(after nnlab/training/roll_call.py has checked them), Keras's `DataParallel` splits each
global batch over every device of every process, and each process feeds its own rows of it.

JAX's runtime ends a process that loses another at its exit: its shutdown waits for the lost
one, then aborts. So a process that stops training early (a lost peer, an error, a signal)
leaves with `os._exit` once its own cleanup is done, and one that finished leaves the
runtime with the others at once (`leave`), then saves and logs alone.
"""

from __future__ import annotations

import atexit
import math
import os
import socket
import sys
from collections import Counter
from typing import Any

from nnlab.core.errors import DeviceError, Interrupted, ProcessesError

# A process that stops answering is given up after this long at most (JAX's heartbeat).
HEARTBEAT_SECONDS = 100
# What JAX's collectives and its coordination service say when a peer is gone.
LOST_PEER = ("Gloo", "Connection reset", "Connection closed", "UNAVAILABLE",
             "DEADLINE_EXCEEDED", "heartbeat", "coordination service", "Broken pipe")

_abandoned: list[int] = []  # the exit code to leave with, once the runtime cannot shut down


def start(model: str, params: Any, process: int) -> None:
    """Join JAX's distributed runtime as `process` of `params.processes`, at
    `params.coordinator` (process 0 starts the coordinator service there). Before anything
    else asks JAX for a device."""
    import jax

    if jax.distributed.is_initialized():
        raise DeviceError(f"{model}: JAX's distributed runtime already runs in this process; "
                          f"train one model of several processes per process (each stage is)")
    timeout = max(math.ceil(params.join_timeout), 1)
    try:
        jax.distributed.initialize(
            coordinator_address=params.coordinator, num_processes=params.processes,
            process_id=process, initialization_timeout=timeout,
            heartbeat_timeout_seconds=max(min(timeout, HEARTBEAT_SECONDS), 10))
        atexit.register(_leave_at_exit)  # after JAX's own: runs before it
        devices = jax.devices()  # the processes exchange their devices here
    except Exception as error:  # noqa: BLE001 - JAX raises its runtime's own errors
        _abandoned.append(2)
        raise ProcessesError(f"{model}: JAX's distributed runtime did not start at "
                             f"{params.coordinator} as process {process} of "
                             f"{params.processes} ({_first_line(error)}); each machine's host "
                             f"name ({socket.gethostname()}) must resolve to an address the "
                             f"others reach") from None
    _same_devices_everywhere(model, devices)


def _same_devices_everywhere(model: str, devices: list[Any]) -> None:
    """Each process feeds an equal share of every batch: each needs as many devices."""
    counts = Counter(device.process_index for device in devices)
    if len(set(counts.values())) > 1:
        found = ", ".join(f"process {index}: {count}" for index, count in sorted(counts.items()))
        raise DeviceError(f"{model}: the processes have different device counts ({found}); "
                          f"give each as many (CUDA_VISIBLE_DEVICES, or XLA_FLAGS="
                          f"--xla_force_host_platform_device_count on CPUs)")


def stopped(model: str, epoch: int, error: BaseException) -> BaseException:
    """What a process raises when its training stopped early: a lost peer becomes one
    ProcessesError line. Either way, the process will leave with `os._exit` (JAX's shutdown
    would wait for the lost one)."""
    code = 128 + error.signal_number if isinstance(error, Interrupted) else 2
    _abandoned.append(code)
    text = str(error)
    if isinstance(error, Exception) and any(sign in text for sign in LOST_PEER):
        return ProcessesError(
            f"{model}: another process stopped answering during epoch {epoch + 1} "
            f"({_first_line(error)}); the checkpoint of the epochs before is kept: start every "
            f"process again (`dvc repro` on process 0's machine, `nnlab join` on the others) "
            f"to go on from it")
    return error


def leave(trained: Any, local: Any) -> Any:
    """Every process, once training ended well: `local` (the same model, built outside the
    distribution) given `trained`'s variables, then the runtime left together (a barrier), so
    that process 0 saves and logs alone afterwards."""
    import jax
    import numpy as np

    for mine, theirs in zip(local.variables, trained.variables, strict=True):
        mine.assign(np.asarray(theirs.value))
    jax.distributed.shutdown()
    return local


def _leave_at_exit() -> None:
    if _abandoned:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_abandoned[-1])


def _first_line(error: BaseException) -> str:
    """The error's own words: its first line, without XLA's nested "Error dispatching
    computation: " prefixes (one per layer it passed)."""
    text = str(error).replace("Error dispatching computation: ", "").strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__
