"""The optimizers' update rules, one row each: the table that ties the three places a rule is
written to one name.

- optimizers.py: the Optimizer of that name keeps the rule's `slots` and computes its
  `scalars` each step (Adam's bias-corrected step size...);
- kernels.py: numba's fused loop of that name, on the CPU;
- array_kernels.py: the same maths as whole-array expressions of that name, for CuPy on a GPU.

Each takes (param, grad, *slots, *scalars), 1-D arrays changed in place. `reference` is the
rule written with NumPy's ufuncs, pass after pass, in the loops' order of operations: both
paths must equal it bit for bit, and tests/unit/models/test_update_rules.py checks every row
against all three places, so a rule added to one of them only, or with other arguments,
fails there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Rule:
    name: str  # params.yaml's optimizer, and the kernel's name in both kernel modules
    slots: tuple[str, ...]  # state kept per weight between steps, zero at the start
    scalars: tuple[str, ...]  # the kernel's arguments after the slots, in the arrays' dtype
    reference: Callable[..., None]


def _sgd(param: Any, grad: Any, lr: Any) -> None:
    param -= grad * lr


def _momentum(param: Any, grad: Any, velocity: Any, momentum: Any, lr: Any) -> None:
    velocity *= momentum
    velocity -= grad * lr
    param += velocity


def _nesterov(param: Any, grad: Any, velocity: Any, momentum: Any, lr: Any) -> None:
    lr_grad = grad * lr
    velocity *= momentum
    velocity -= lr_grad
    param -= lr_grad
    param += velocity * momentum


def _adagrad(param: Any, grad: Any, squares: Any, lr: Any, epsilon: Any) -> None:
    squares += grad * grad
    param -= grad / (np.sqrt(squares) + epsilon) * lr


def _rmsprop(param: Any, grad: Any, mean_square: Any, lr: Any, one_minus_beta2: Any,
             epsilon: Any) -> None:
    mean_square += (grad * grad - mean_square) * one_minus_beta2
    param -= grad / (np.sqrt(mean_square) + epsilon) * lr


def _adam(param: Any, grad: Any, m: Any, v: Any, alpha: Any, one_minus_beta1: Any,
          one_minus_beta2: Any, epsilon: Any) -> None:
    m += (grad - m) * one_minus_beta1
    v += (grad * grad - v) * one_minus_beta2
    param -= m / (np.sqrt(v) + epsilon) * alpha


RULES: dict[str, Rule] = {rule.name: rule for rule in (
    Rule("sgd", (), ("lr",), _sgd),
    Rule("momentum", ("velocity",), ("momentum", "lr"), _momentum),
    Rule("nesterov", ("velocity",), ("momentum", "lr"), _nesterov),
    Rule("adagrad", ("squares",), ("lr", "epsilon"), _adagrad),
    Rule("rmsprop", ("mean_square",), ("lr", "one_minus_beta2", "epsilon"), _rmsprop),
    Rule("adam", ("m", "v"), ("alpha", "one_minus_beta1", "one_minus_beta2", "epsilon"),
         _adam),
)}
