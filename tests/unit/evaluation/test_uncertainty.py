"""Intervals, paired tests and seed spreads (nnlab/evaluation/uncertainty.py) against published
values and against scipy on random cases; the report's pairs and ties
(nnlab/evaluation/comparison.py) on outcomes made to order."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nnlab.evaluation import comparison, uncertainty
from nnlab.evaluation.metrics import classification_metrics
from nnlab.evaluation.outcomes import Outcomes, read_outcomes, write_outcomes


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
# method 3 (Wilson's score interval without continuity correction).
@pytest.mark.parametrize(("right", "total", "low", "high"), [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718)])
def test_accuracy_interval_is_wilsons_as_published(right: int, total: int, low: float,
                                                   high: float) -> None:
    assert uncertainty.accuracy_interval(right, total) == pytest.approx((low, high), abs=5e-5)


def test_accuracy_interval_at_the_edges_is_finite_and_inside_0_1() -> None:
    assert uncertainty.accuracy_interval(360, 360) == pytest.approx((0.98944, 1.0), abs=1e-5)
    low, high = uncertainty.accuracy_interval(0, 1)
    assert low == 0.0 and 0 < high < 1
    with pytest.raises(ValueError, match="total > 0"):
        uncertainty.accuracy_interval(0, 0)


def _mcnemar_by_hand(only_first: int, only_second: int) -> float:
    """The exact test written out: twice the smaller binomial tail of n discordant images."""
    n, low = only_first + only_second, min(only_first, only_second)
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(low + 1)) / 2 ** n)


def test_mcnemar_matches_the_published_digits_case_and_the_binomial_tail() -> None:
    # cnn against logreg on digits (issue "comparable experiments"): 11 against 3, p = 0.057
    assert uncertainty.mcnemar(11, 3) == pytest.approx(0.0574, abs=5e-5)
    assert uncertainty.mcnemar(3, 3) == 1.0 and uncertainty.mcnemar(0, 0) == 1.0
    rng = np.random.default_rng(1)
    for only_first, only_second in rng.integers(0, 60, (40, 2)).tolist():
        assert uncertainty.mcnemar(only_first, only_second) == pytest.approx(
            _mcnemar_by_hand(only_first, only_second), rel=1e-9)


def test_holm_adjusts_step_down_and_keeps_the_order() -> None:
    # Holm (1979) as statsmodels' multipletests(method="holm") gives it
    assert uncertainty.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert uncertainty.holm([0.5, 0.9]) == [1.0, 1.0]
    assert uncertainty.holm([]) == []


def test_f1_interval_is_seeded_and_holds_the_metric() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    predicted = np.where(rng.random(400) < 0.9, labels, rng.integers(0, 10, 400))
    probabilities = np.eye(10)[predicted]
    f1 = classification_metrics(labels, probabilities, 10)["f1_macro"]
    # the bootstrap's statistic is metrics.py's macro F1
    assert uncertainty._macro_f1(labels * 10 + predicted, 10) == pytest.approx(f1)
    low, high = uncertainty.f1_interval(labels, predicted, 10, seed=3)
    assert low < f1 < high and high - low < 0.1
    assert uncertainty.f1_interval(labels, predicted, 10, seed=3) == (low, high)
    # scipy's own percentile bootstrap, one resample at a time, agrees
    reference = stats.bootstrap(
        (labels * 10 + predicted,), lambda codes: uncertainty._macro_f1(codes, 10),
        n_resamples=uncertainty.BOOTSTRAP_RESAMPLES, vectorized=False, method="percentile",
        rng=np.random.default_rng(3)).confidence_interval
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=0.01)


def test_intervals_of_a_perfect_model_and_of_a_one_class_set_are_numbers() -> None:
    labels = np.full(50, 2)
    for predicted in (labels, np.where(np.arange(50) < 5, 1, 2)):
        found = uncertainty.headline_intervals(labels, predicted, 3)
        assert all(math.isfinite(value) and 0 <= value <= 1 for value in found.values())
        assert found["accuracy_low"] <= found["accuracy_high"]
    assert uncertainty.headline_intervals(labels, labels, 3)["accuracy_high"] == 1.0


def test_spread_is_scipys_t_interval() -> None:
    values = [0.97, 0.975, 0.981, 0.969, 0.978]
    found = uncertainty.spread(values)
    half = 2.776445 * np.std(values, ddof=1) / math.sqrt(5)  # t(0.975, df=4), from tables
    assert found.interval == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert (found.n, found.low, found.high) == (5, 0.969, 0.981)
    assert uncertainty.spread([0.9, 0.9]).interval == (0.9, 0.9)  # no spread, no NaN
    assert uncertainty.spread([0.9]).interval is None


def test_paired_is_ttest_rel_and_survives_a_constant_difference() -> None:
    rng = np.random.default_rng(2)
    first = rng.normal(0.95, 0.01, 6)
    second = first + rng.normal(0.008, 0.004, 6)
    found = uncertainty.paired(first.tolist(), second.tolist())
    reference = stats.ttest_rel(second, first)
    assert found.p_value == pytest.approx(reference.pvalue)
    assert found.interval == pytest.approx(tuple(reference.confidence_interval()))
    same = uncertainty.paired([0.9, 0.8], [0.9, 0.8])
    assert (same.mean, same.p_value) == (0.0, 1.0)
    with pytest.raises(ValueError, match="the same seeds"):
        uncertainty.paired([0.9, 0.8], [0.9])


def _outcomes(right: list[bool]) -> Outcomes:
    labels = np.zeros(len(right), dtype=np.int64)
    return Outcomes(labels, np.where(right, 0, 1).astype(np.int64), np.ones(len(right)))


def test_best_by_validation_names_the_tie_in_plain_words() -> None:
    base = [True] * 300
    found = comparison.best_by_validation({
        "a": _outcomes(base[:-3] + [False] * 3),       # 297 right
        "b": _outcomes(base),                           # 300 right: best
        "c": _outcomes(base[:-40] + [False] * 40),     # 260 right: measurably worse
    })
    assert found.model == "b" and found.tied_with == ["a"]
    verdict = found.verdict(1.0)
    assert "**tie**" in verdict and "cannot tell it apart from a" in verdict
    assert "better than c" in verdict
    alone = comparison.best_by_validation({"b": _outcomes(base)})
    assert alone.tied_with == [] and "the only model" in alone.verdict(1.0)


def test_all_pairs_are_holm_corrected_and_refuse_different_images() -> None:
    found = comparison.all_pairs({"a": _outcomes([True] * 30 + [False] * 10),
                                  "b": _outcomes([False] * 10 + [True] * 30),
                                  "c": _outcomes([True] * 40)})
    assert [(pair.first, pair.second) for pair in found] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [pair.p_holm for pair in found] == uncertainty.holm([p.p_value for p in found])
    assert found[1].better == "c" and found[0].better is None
    with pytest.raises(ValueError, match="different images"):
        comparison.all_pairs({"a": _outcomes([True] * 3), "b": _outcomes([True] * 4)})


def test_predictions_file_round_trips_and_refuses_a_corrupt_one(tmp_path: Path) -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    write_outcomes(tmp_path / "p.csv", {"val": (np.array([0, 1, 1]), probabilities),
                                        "test": (np.array([1]), probabilities[:1])})
    found = read_outcomes(tmp_path / "p.csv")
    assert found["val"].right.tolist() == [True, True, False]
    assert found["test"].confidence.tolist() == [0.9]
    (tmp_path / "p.csv").write_text("split,index,label,predicted,confidence\nval,1,0,0,1\n")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_outcomes(tmp_path / "p.csv")
