"""Every optimizer rule of nnlab/models/numpy/update_rules.py against the three places that
write it: the Optimizer of its name (optimizers.py), numba's loop (kernels.py) and the
whole-array expressions CuPy runs on a GPU (array_kernels.py, here on NumPy). Each must exist
with the row's arguments and compute the row's NumPy reference bit for bit, so a rule added
to one place only, or written differently in one, fails here."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from nnlab.models.numpy import array_kernels, kernels
from nnlab.models.numpy.optimizers import OPTIMIZERS, make_optimizer
from nnlab.models.numpy.update_rules import RULES


def _rule_functions(module: object) -> set[str]:
    """The module's update rules: its functions taking (param, grad, ...)."""
    return {name for name, function in vars(module).items()
            if callable(function) and not name.startswith("_")
            and list(_arguments(function))[:2] == ["param", "grad"]}


def _arguments(function: object) -> list[str]:
    target = getattr(function, "py_func", function)  # numba's dispatcher: its Python source
    return list(inspect.signature(target).parameters)  # type: ignore[arg-type]


def test_each_place_has_exactly_the_tables_rules() -> None:
    assert set(OPTIMIZERS) == set(RULES)
    assert _rule_functions(kernels) == set(RULES)
    assert _rule_functions(array_kernels) == set(RULES)


@pytest.mark.parametrize("name", list(RULES))
def test_each_rule_takes_the_tables_arguments_everywhere(name: str) -> None:
    rule = RULES[name]
    expected = ["param", "grad", *rule.slots, *rule.scalars]
    assert _arguments(getattr(kernels, name)) == expected
    assert _arguments(getattr(array_kernels, name)) == expected
    assert _arguments(rule.reference) == expected
    optimizer = make_optimizer(name, 0.01)
    assert optimizer.rule is rule and optimizer.slots == rule.slots
    optimizer.begin_step()
    assert len(optimizer.scalars()) == len(rule.scalars)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(RULES))
def test_the_loop_and_the_gpu_expressions_compute_the_reference_bit_for_bit(
        name: str, dtype: type) -> None:
    """Same operations, same order, same dtype: no FMA, no reassociation, float32 stays
    float32. Three steps of an optimizer, its scalars as it computes them (Adam's bias
    correction changes them each step)."""
    rule = RULES[name]
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(1000).astype(dtype) for _ in range(2 + len(rule.slots))]
    start[2:] = [np.abs(array) for array in start[2:]]  # squares, second moments: >= 0
    runs = {place: [array.copy() for array in start]
            for place in ("optimizer", "loop", "gpu", "reference")}
    optimizer = make_optimizer(name, 0.01, momentum=0.9)
    optimizer.load_state({f"{slot}.w": array for slot, array
                          in zip(rule.slots, start[2:], strict=True)}, {})
    for step in range(1, 4):
        grad = rng.standard_normal(1000).astype(dtype)
        param = runs["optimizer"][0]
        optimizer.update({"w": param}, {"w": grad})
        scalars = tuple(map(np.dtype(dtype).type, optimizer.scalars()))
        for place, function in (("loop", getattr(kernels, name)),
                                ("gpu", getattr(array_kernels, name)),
                                ("reference", rule.reference)):
            arrays = runs[place]
            function(arrays[0], grad, *arrays[2:], *scalars)
        for place in ("optimizer", "loop", "gpu"):
            assert runs[place][0].dtype == dtype
            np.testing.assert_array_equal(runs[place][0], runs["reference"][0],
                                          err_msg=f"{place}, step {step}")
        for loop_slot, reference_slot in zip(runs["loop"][2:], runs["reference"][2:],
                                             strict=True):
            np.testing.assert_array_equal(loop_slot, reference_slot)
