"""The one divergence rule (nnlab/divergence.py), case by case."""

from __future__ import annotations

import math

import pytest

from nnlab.core.errors import DivergenceError
from nnlab.models.divergence import FACTOR, DivergenceGuard

CHANCE_10 = math.log(10)  # 2.30: a uniform prediction over 10 classes


def _feed(losses: list[float], accuracies: list[float] | None = None) -> None:
    guard = DivergenceGuard("numpy_dnn", 10, 0.5)
    accuracies = accuracies or [0.9] * len(losses)
    for epoch, (loss, accuracy) in enumerate(zip(losses, accuracies, strict=True), start=1):
        guard.check_epoch(loss, epoch, accuracy, last=epoch == len(losses))


def test_healthy_training_passes() -> None:
    _feed([2.1, 1.2, 0.6, 0.3])


def test_a_slow_learner_at_chance_that_never_blew_up_passes() -> None:
    # a short or hard training is not a divergence: the loss never left chance level
    _feed([2.31, 2.30, 2.29], [0.10, 0.11, 0.12])


def test_one_early_spike_that_recovers_passes() -> None:
    _feed([3 * FACTOR * CHANCE_10, 1.5, 0.8], [0.3, 0.6, 0.8])


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_non_finite_loss_fails_at_once(loss: float) -> None:
    with pytest.raises(DivergenceError, match=f"training loss became {loss} in epoch 2"):
        _feed([2.0, loss, 1.0])


def test_a_loss_that_stays_far_above_chance_fails_after_three_epochs() -> None:
    high = FACTOR * CHANCE_10 + 1
    with pytest.raises(DivergenceError, match=r"above 9\.21 .* for 3 epoch\(s\) in epoch 3"):
        _feed([high, high, high, 0.5, 0.4])


def test_a_loss_still_far_above_chance_at_the_end_fails() -> None:
    with pytest.raises(DivergenceError, match="for 1 epoch"):
        _feed([2.0, 1.0, FACTOR * CHANCE_10 + 1])


def test_a_blow_up_that_collapses_to_chance_fails() -> None:
    # Adam at learning rate 10 on digits: 69, 23, 7.2, then a flat 2.8 at 10% accuracy
    with pytest.raises(DivergenceError, match=r"blew up to 69 in epoch 1 .* accuracy 0\.095"):
        _feed([69.0, 23.0, 7.2, 2.8], [0.10, 0.097, 0.11, 0.095])


def test_the_message_names_model_learning_rate_and_a_lower_one() -> None:
    with pytest.raises(DivergenceError) as error:
        _feed([math.nan])
    assert str(error.value).endswith(
        "it diverged; lower numpy_dnn.learning_rate (now 0.5), e.g. to 0.05")
