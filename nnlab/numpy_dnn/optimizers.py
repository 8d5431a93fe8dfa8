"""Optimizers. Every one shares `update(params, grads)` and changes params in place."""

from __future__ import annotations

import inspect

import numpy as np

from nnlab.numpy_dnn.layers import Array


class Optimizer:
    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        for key, param in params.items():
            param -= self.learning_rate * grads[key]


class Momentum(Optimizer):
    """Heavy-ball momentum: v = momentum * v - lr * g; w += v."""

    def __init__(self, learning_rate: float, momentum: float = 0.9) -> None:
        super().__init__(learning_rate)
        self.momentum = momentum
        self.velocity: dict[str, Array] = {}

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        for key, param in params.items():
            velocity = self.velocity.setdefault(key, np.zeros_like(param))
            velocity *= self.momentum
            velocity -= self.learning_rate * grads[key]
            param += velocity


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015), in the form Keras uses."""

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
        self.m: dict[str, Array] = {}
        self.v: dict[str, Array] = {}

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        self.step += 1
        # Fold both bias corrections into the step size (cheaper than correcting m and v).
        alpha = (
            self.learning_rate
            * np.sqrt(1 - self.beta2**self.step)
            / (1 - self.beta1**self.step)
        )
        for key, param in params.items():
            grad = grads[key]
            m = self.m.setdefault(key, np.zeros_like(param))
            v = self.v.setdefault(key, np.zeros_like(param))
            m += (1 - self.beta1) * (grad - m)
            v += (1 - self.beta2) * (grad * grad - v)
            param -= (alpha * m / (np.sqrt(v) + self.epsilon)).astype(param.dtype)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


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
