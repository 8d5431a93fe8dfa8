"""Optimizers. Every one shares `update(params, grads)` and changes params in place.

Each rule is one row of update_rules.py (its slots, its kernel's name and arguments, its
reference in NumPy ufuncs), which kernels.py and array_kernels.py implement. The update rules
follow Keras's formulas (so the Keras agreement tests can compare weights),
except Adagrad and RMSprop, which add epsilon outside the square root as the source tutorials do.

Speed: an update is bound by memory traffic, so each rule is one fused loop (kernels.py)
that reads every array once and writes each changed one once, in the arrays' own dtype
(float32 stays float32). The network hands over one flat array
(`Network.flat_parameters`), so a training step is one call with no walk over layers.
The update runs in the calling thread only. Right after a step's matmuls, OpenBLAS's
threads still spin on the other cores waiting for work, and a second update thread had to
wait for one of them to be descheduled: Adam over the 1.86M weights of 784-1024-1024-10,
timed right after a backward pass, took 5.6 ms with two threads and 0.97 ms with one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from numpy.typing import NDArray

from nnlab.core import stops
from nnlab.models.numpy.arrays import kernels, np  # NumPy or CuPy (arrays.py)
from nnlab.models.numpy.layers import Array
from nnlab.models.numpy.update_rules import RULES, Rule

# (kernel, dtype) pairs this process has compiled: their first call ran under stops.deferred().
_COMPILED: set[tuple[str, np.dtype]] = set()


class Optimizer:
    """Base class. Subclasses name their rule (`rule`, a row of update_rules.RULES: its
    per-parameter state `slots`, zero-initialised and kept across steps, and the kernel of
    that name in kernels.py and array_kernels.py), and compute the rule's scalars after
    (param, grad, *slots) each step (`scalars`).

    `learning_rate` may be changed between steps (learning-rate decay).
    """

    rule: Rule

    @property
    def slots(self) -> tuple[str, ...]:
        return self.rule.slots

    @property
    def kernel(self) -> str:
        return self.rule.name

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate
        self._state: dict[str, dict[str, Array]] = {}  # slot -> key -> array
        # key -> (id(param), id(grad), (param, grad, *slots) as 1-D views)
        self._flat: dict[str, tuple[int, int, tuple[Array, ...]]] = {}

    def begin_step(self) -> None:
        """Called once per update, before any parameter (e.g. Adam's step count)."""

    def scalars(self) -> tuple[float, ...]:
        raise NotImplementedError

    def update_arrays(self, param: Array, grad: Array, *slots: Array) -> None:
        """Update one flattened parameter in place; `slots` follow `self.slots`. The scalars
        take the arrays' dtype, so float32 stays float32."""
        loop = getattr(kernels, self.kernel)
        arguments = (param, grad, *slots, *map(param.dtype.type, self.scalars()))
        if (self.kernel, param.dtype) in _COMPILED:
            loop(*arguments)
            return
        with stops.deferred():  # numba compiles it (or loads it from its cache) now
            loop(*arguments)
        _COMPILED.add((self.kernel, param.dtype))

    def state_arrays(self) -> dict[str, Array]:
        """Every slot array, keyed "<slot>.<key>" (a checkpoint saves them)."""
        return {f"{slot}.{key}": array for slot, arrays in self._state.items()
                for key, array in arrays.items()}

    def state_scalars(self) -> dict[str, float]:
        """Counters the rule keeps between steps (Adam's step); saved with the slots."""
        return {}

    def load_state(self, arrays: dict[str, NDArray[Any]], scalars: dict[str, float]) -> None:
        """Go on from `state_arrays()` and `state_scalars()` of an optimizer of the same kind
        over the same parameters, before its first update."""
        if self._flat:
            raise RuntimeError("load_state() must come before the first update")
        self._state = {}
        for name, array in arrays.items():
            slot, key = name.split(".", 1)
            if slot not in self.slots:
                raise ValueError(f"{type(self).__name__} has no slot {slot!r}")
            self._state.setdefault(slot, {})[key] = np.array(array)
        for name, value in scalars.items():
            setattr(self, name, type(getattr(self, name))(value))

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """One step over every array of `params` (same keys as `grads`), in place."""
        self.begin_step()
        for key, param in params.items():
            self.update_arrays(*self._flatten(key, param, grads[key]))

    def _flatten(self, key: str, param: Array, grad: Array) -> tuple[Array, ...]:
        """(param, grad, *slots) as 1-D views; built once per parameter array."""
        cached = self._flat.get(key)
        if cached is not None and cached[0] == id(param) and cached[1] == id(grad):
            return cached[2]
        if not (param.flags.c_contiguous and grad.flags.c_contiguous):
            raise ValueError(f"{key!r}: an optimizer updates contiguous arrays only")
        arrays = [param, grad]
        for slot in self.slots:
            arrays.append(self._state.setdefault(slot, {}).setdefault(key, np.zeros_like(param)))
        flat = tuple(array.reshape(-1) for array in arrays)  # views: each one is contiguous
        self._flat[key] = (id(param), id(grad), flat)
        return flat


class SGD(Optimizer):
    """w -= lr * g"""

    rule = RULES["sgd"]

    def scalars(self) -> tuple[float, ...]:
        return (self.learning_rate,)


class Momentum(Optimizer):
    """Heavy-ball momentum: v = momentum * v - lr * g; w += v."""


    def __init__(self, learning_rate: float, momentum: float = 0.9) -> None:
        super().__init__(learning_rate)
        self.momentum = momentum

    rule = RULES["momentum"]

    def scalars(self) -> tuple[float, ...]:
        return self.momentum, self.learning_rate


class Nesterov(Momentum):
    """Nesterov momentum, Keras's form: v = momentum * v - lr * g; w += momentum * v - lr * g."""

    rule = RULES["nesterov"]  # the same scalars as Momentum


class Adagrad(Optimizer):
    """h += g^2; w -= lr * g / (sqrt(h) + epsilon). Each weight's step shrinks over time."""


    def __init__(self, learning_rate: float, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.epsilon = epsilon

    rule = RULES["adagrad"]

    def scalars(self) -> tuple[float, ...]:
        return self.learning_rate, self.epsilon


class RMSprop(Optimizer):
    """s = beta2 * s + (1 - beta2) * g^2; w -= lr * g / (sqrt(s) + epsilon).

    The decay is called beta2, as in the source tutorials (it is Keras's `rho`).
    """


    def __init__(self, learning_rate: float, beta2: float = 0.999, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta2, self.epsilon = beta2, epsilon

    rule = RULES["rmsprop"]  # s += (1 - beta2) * (g^2 - s)

    def scalars(self) -> tuple[float, ...]:
        return self.learning_rate, 1 - self.beta2, self.epsilon


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015), in the form Keras uses:

    m += (1 - beta1) (g - m);  v += (1 - beta2) (g^2 - v)
    w -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)
    """


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
        self._alpha = self.learning_rate * math.sqrt(1 - self.beta2**self.step) / (
            1 - self.beta1**self.step)

    rule = RULES["adam"]

    def state_scalars(self) -> dict[str, float]:
        return {"step": self.step}

    def scalars(self) -> tuple[float, ...]:
        return self._alpha, 1 - self.beta1, 1 - self.beta2, self.epsilon


# params.yaml's name -> the optimizer; each uses the rule of its name (update_rules.RULES).
OPTIMIZERS: dict[str, type[Optimizer]] = {
    optimizer.rule.name: optimizer
    for optimizer in (SGD, Momentum, Nesterov, Adagrad, RMSprop, Adam)}


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
#   inverse_time: lr0 / (1 + rate * floor(epoch / every))   (the tutorials' schedule_lr_decay)
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
