"""Optimizers. Every one shares `update(params, grads)` and changes params in place.

The update rules follow Keras's formulas (so the Keras agreement tests can compare weights),
except Adagrad and RMSprop, which add epsilon outside the square root as the seeds do.

Speed: an update is a dozen element-wise passes over every weight, bound by memory rather
than arithmetic. So each rule works in place with one scratch buffer (no temporaries, and
float32 stays float32), and large parameters are cut into chunks that a small thread pool
updates in parallel (NumPy releases the GIL in element-wise loops). Chunks are disjoint, so
the result does not depend on thread timing.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nnlab.numpy_dnn.layers import Array

CHUNK = 1 << 18  # elements per task (1 MB of float32): large enough to amortise the dispatch
_pool: ThreadPoolExecutor | None = None


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    return _pool


class Optimizer:
    """Base class. Subclasses name their per-parameter state in `slots` (zero-initialised,
    kept across steps) and implement `update_arrays` on one chunk of one parameter.

    `learning_rate` may be changed between steps (learning-rate decay).
    """

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate
        self._state: dict[str, dict[str, Array]] = {}  # slot -> key -> array
        self._tasks: dict[str, tuple[int, int, list[tuple[Array, ...]]]] = {}

    def begin_step(self) -> None:
        """Called once per update, before any parameter (e.g. Adam's step count)."""

    def update_arrays(self, param: Array, grad: Array, tmp: Array, *slots: Array) -> None:
        """Update one chunk of one parameter in place; `slots` follow `self.slots`."""
        raise NotImplementedError

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        self.begin_step()
        tasks = [task for key in params for task in self._chunks(key, params[key], grads[key])]
        # Only full-size chunks are worth a thread; small ones (biases, small layers) run
        # here while the pool works.
        large = [task for task in tasks if task[0].size == CHUNK]
        futures = [_thread_pool().submit(self.update_arrays, *task) for task in large[1:]]
        for task in tasks:
            if task[0].size < CHUNK or task is large[0]:
                self.update_arrays(*task)
        for future in futures:
            future.result()

    def _chunks(self, key: str, param: Array, grad: Array) -> list[tuple[Array, ...]]:
        """(param, grad, tmp, *slots) views per chunk; built once per parameter array."""
        cached = self._tasks.get(key)
        if cached is not None and cached[0] == id(param) and cached[1] == id(grad):
            return cached[2]
        arrays = [param, grad, np.zeros_like(param)]
        for slot in self.slots:
            arrays.append(self._state.setdefault(slot, {}).setdefault(key, np.zeros_like(param)))
        flat = [array.reshape(-1) for array in arrays]  # views: every array is contiguous
        tasks = [
            tuple(array[start : start + CHUNK] for array in flat)
            for start in range(0, param.size, CHUNK)
        ]
        self._tasks[key] = (id(param), id(grad), tasks)
        return tasks


class SGD(Optimizer):
    """w -= lr * g"""

    def update_arrays(self, param: Array, grad: Array, tmp: Array, *slots: Array) -> None:
        param -= np.multiply(grad, self.learning_rate, out=tmp)


class Momentum(Optimizer):
    """Heavy-ball momentum: v = momentum * v - lr * g; w += v."""

    slots = ("velocity",)

    def __init__(self, learning_rate: float, momentum: float = 0.9) -> None:
        super().__init__(learning_rate)
        self.momentum = momentum

    def update_arrays(self, param: Array, grad: Array, tmp: Array, *slots: Array) -> None:
        (velocity,) = slots
        velocity *= self.momentum
        velocity -= np.multiply(grad, self.learning_rate, out=tmp)
        param += velocity


class Nesterov(Momentum):
    """Nesterov momentum, Keras's form: v = momentum * v - lr * g; w += momentum * v - lr * g."""

    def update_arrays(self, param: Array, grad: Array, tmp: Array, *slots: Array) -> None:
        (velocity,) = slots
        lr_grad = np.multiply(grad, self.learning_rate, out=tmp)
        velocity *= self.momentum
        velocity -= lr_grad
        param -= lr_grad
        param += np.multiply(velocity, self.momentum, out=tmp)


class Adagrad(Optimizer):
    """h += g^2; w -= lr * g / (sqrt(h) + epsilon). Each weight's step shrinks over time."""

    slots = ("squares",)

    def __init__(self, learning_rate: float, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.epsilon = epsilon

    def update_arrays(self, param: Array, grad: Array, tmp: Array, *slots: Array) -> None:
        (squares,) = slots
        squares += np.multiply(grad, grad, out=tmp)
        _scaled_step(param, grad, squares, self.learning_rate, self.epsilon, tmp)


class RMSprop(Optimizer):
    """s = beta2 * s + (1 - beta2) * g^2; w -= lr * g / (sqrt(s) + epsilon).

    The decay is called beta2, as in the seeds (it is Keras's `rho`).
    """

    slots = ("mean_square",)

    def __init__(self, learning_rate: float, beta2: float = 0.999, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta2, self.epsilon = beta2, epsilon

    def update_arrays(self, param: Array, grad: Array, tmp: Array, *slots: Array) -> None:
        (mean_square,) = slots
        np.multiply(grad, grad, out=tmp)
        tmp -= mean_square
        tmp *= 1 - self.beta2
        mean_square += tmp  # s += (1 - beta2) * (g^2 - s)
        _scaled_step(param, grad, mean_square, self.learning_rate, self.epsilon, tmp)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015), in the form Keras uses:

    m += (1 - beta1) (g - m);  v += (1 - beta2) (g^2 - v)
    w -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)
    """

    slots = ("m", "v")

    def __init__(
        self,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(learning_rate)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.step = 0
        self._alpha = learning_rate

    def begin_step(self) -> None:
        self.step += 1
        # Both bias corrections folded into the step size (cheaper than correcting m and v).
        # A Python float, so float32 arrays are not promoted to float64.
        self._alpha = float(
            self.learning_rate * math.sqrt(1 - self.beta2**self.step) / (1 - self.beta1**self.step)
        )

    def update_arrays(self, param: Array, grad: Array, tmp: Array, *slots: Array) -> None:
        m, v = slots
        np.subtract(grad, m, out=tmp)
        tmp *= 1 - self.beta1
        m += tmp
        np.multiply(grad, grad, out=tmp)
        tmp -= v
        tmp *= 1 - self.beta2
        v += tmp
        _scaled_step(param, m, v, self._alpha, self.epsilon, tmp)


def _scaled_step(
    param: Array, numerator: Array, squares: Array, lr: float, epsilon: float, tmp: Array
) -> None:
    """param -= lr * numerator / (sqrt(squares) + epsilon), in place, using `tmp`."""
    np.sqrt(squares, out=tmp)
    tmp += epsilon
    np.divide(numerator, tmp, out=tmp)
    tmp *= lr
    param -= tmp


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def make_optimizer(name: str, learning_rate: float, **hyperparameters: float) -> Optimizer:
    """Build an optimizer by its params.yaml name, passing only the hyperparameters it takes.

    Example: ``make_optimizer("adam", 1e-3, momentum=0.9, beta1=0.9)`` ignores ``momentum``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    optimizer_class = OPTIMIZERS[name]
    accepted = inspect.signature(optimizer_class).parameters
    chosen = {key: value for key, value in hyperparameters.items() if key in accepted}
    return optimizer_class(learning_rate, **chosen)


# Learning-rate decay, applied once per epoch (epoch counts from 0):
#   inverse_time: lr0 / (1 + rate * floor(epoch / every))   (the seeds' schedule_lr_decay)
#   step:         lr0 * rate ** floor(epoch / every)         (drop by `rate` every `every`)
Schedule = Callable[[float, int, float, int], float]
LR_SCHEDULES: dict[str, Schedule] = {
    "inverse_time": lambda lr0, epoch, rate, every: lr0 / (1 + rate * (epoch // every)),
    "step": lambda lr0, epoch, rate, every: lr0 * rate ** (epoch // every),
}


def scheduled_learning_rate(
    schedule: str | None, lr0: float, epoch: int, rate: float, every: int
) -> float:
    """The learning rate for `epoch` (0-based) under `schedule`; None means constant."""
    if schedule is None:
        return lr0
    if schedule not in LR_SCHEDULES:
        raise ValueError(
            f"unknown learning_rate_decay {schedule!r}; choose one of: {', '.join(LR_SCHEDULES)}"
        )
    return LR_SCHEDULES[schedule](lr0, epoch, rate, every)
