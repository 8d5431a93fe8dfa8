"""How sure a figure is: 95% intervals of a model's metrics, paired tests between two models on
the same images, and the spread of seed repeats. Every statistic is scipy's; the only rule
written here is Holm's step-down correction, which scipy does not have.

    accuracy_interval(right, total)         Wilson score interval (binomtest.proportion_ci)
    f1_interval(labels, predicted, C, seed) seeded percentile bootstrap over images
    mcnemar(only_a, only_b)                 exact two-sided McNemar: binomtest on the
                                            images exactly one of two models gets right
    holm(p_values)                          Holm-adjusted p-values across a family of tests
    spread(values)                          mean, std, min, max and 95% t-interval
    paired(first, second)                   mean difference, its t-interval, ttest_rel's p
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

LEVEL = 0.95  # every interval of the project
ALPHA = 0.05  # 1 - LEVEL: a difference is "measurable" below this p-value, after Holm
BOOTSTRAP_RESAMPLES = 1000
# Resamples scored at once: memory is BOOTSTRAP_BATCH x images x 8 bytes (80 MB at 10,000 images)
BOOTSTRAP_BATCH = 1000
BOOTSTRAP_SEED = 0  # fixed: the same predictions give the same interval in every run


def headline_intervals(labels: NDArray[np.integer], predicted: NDArray[np.integer],
                       n_classes: int) -> dict[str, float]:
    """metrics.json's intervals of one split: `accuracy_low/high` (Wilson) and
    `f1_macro_low/high` (bootstrap), beside `accuracy` and `f1_macro`."""
    accuracy = accuracy_interval(int(np.sum(labels == predicted)), int(labels.size))
    f1 = f1_interval(labels, predicted, n_classes, BOOTSTRAP_SEED)
    return {"accuracy_low": accuracy[0], "accuracy_high": accuracy[1],
            "f1_macro_low": f1[0], "f1_macro_high": f1[1]}


def accuracy_interval(right: int, total: int) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy of `right` out of `total` images."""
    from scipy.stats import binomtest

    if total <= 0 or not 0 <= right <= total:
        raise ValueError(f"an accuracy needs 0 <= right <= total and total > 0; "
                         f"got right={right}, total={total}")
    interval = binomtest(int(right), int(total)).proportion_ci(LEVEL, method="wilson")
    return _clip(interval.low), _clip(interval.high)


def f1_interval(labels: NDArray[np.integer], predicted: NDArray[np.integer], n_classes: int,
                seed: int) -> tuple[float, float]:
    """The 95% interval of macro F1 by a percentile bootstrap over images, seeded: the same
    predictions give the same interval. (Percentile, not BCa: BCa's jackknife costs one F1 per
    image, and it is undefined when every resample scores the same, e.g. at 100%.)"""
    from scipy.stats import bootstrap

    codes = labels.astype(np.int64) * n_classes + predicted.astype(np.int64)  # (N,)
    if codes.size == 0:
        raise ValueError("macro F1 needs at least one image")

    def statistic(sample: NDArray[np.int64], axis: int = -1) -> NDArray[np.float64]:
        return _macro_f1(np.moveaxis(sample, axis, -1), n_classes)

    result = bootstrap((codes,), statistic, n_resamples=BOOTSTRAP_RESAMPLES, vectorized=True,
                       batch=BOOTSTRAP_BATCH, method="percentile", confidence_level=LEVEL,
                       rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return _clip(float(low)), _clip(float(high))


def _macro_f1(codes: NDArray[np.int64], n_classes: int) -> NDArray[np.float64]:
    """Macro F1 of each row of (..., N) codes `label * C + predicted`, as
    nnlab/evaluation/metrics.py scores it (a class with nothing below its ratio scores 0)."""
    rows = codes.reshape(-1, codes.shape[-1])  # (B, N)
    cells = n_classes * n_classes
    offsets = np.arange(rows.shape[0], dtype=np.int64)[:, None] * cells
    counts = np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * cells)
    counts = counts.reshape(rows.shape[0], n_classes, n_classes)  # (B, true, predicted)
    hits = np.diagonal(counts, axis1=1, axis2=2).astype(np.float64)  # (B, C)
    below = counts.sum(axis=2) + counts.sum(axis=1)  # support + times chosen
    f1 = np.divide(2 * hits, below, out=np.zeros_like(hits), where=below > 0)
    return f1.mean(axis=1).reshape(codes.shape[:-1])


def mcnemar(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value of two models scored on the same images: of the images
    exactly one of them gets right, how unlikely a split this uneven is if each is as likely
    to be the one (Binomial(n, 1/2)). No such image: nothing tells them apart, p = 1."""
    from scipy.stats import binomtest

    total = only_first + only_second
    if total == 0:
        return 1.0
    return float(binomtest(int(only_first), int(total), 0.5).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the given order): the smallest of m is multiplied
    by m, the next by m - 1, ..., each kept at least as large as the one before and at most 1.
    A family of tests keeps its 5% error rate when each adjusted p is compared with 0.05."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Spread:
    """Repeats of one figure: n values, their mean, sample std (ddof=1), range, and the 95%
    t-interval of the mean (None below two values: one value has no spread)."""

    n: int
    mean: float
    std: float | None
    low: float
    high: float
    interval: tuple[float, float] | None

    def as_dict(self) -> dict[str, object]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "min": self.low,
                "max": self.high,
                "interval": list(self.interval) if self.interval is not None else None}


def spread(values: Sequence[float]) -> Spread:
    """Mean, std, min, max and the 95% t-interval of repeated values (e.g. one per seed)."""
    from scipy.stats import ttest_1samp

    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("a spread needs at least one value")
    mean = float(data.mean())
    if data.size < 2:
        return Spread(1, mean, None, mean, mean, None)
    std = float(data.std(ddof=1))
    if std == 0.0:  # every repeat gave the same value: scipy's t would divide by zero
        interval = (mean, mean)
    else:
        found = ttest_1samp(data, 0.0).confidence_interval(LEVEL)
        interval = (float(found.low), float(found.high))
    return Spread(int(data.size), mean, std, float(data.min()), float(data.max()), interval)


@dataclass(frozen=True)
class Paired:
    """`second - first` over paired repeats (the same seeds): mean difference, its 95%
    t-interval and ttest_rel's two-sided p-value."""

    n: int
    mean: float
    interval: tuple[float, float]
    p_value: float

    def as_dict(self) -> dict[str, object]:
        return {"n": self.n, "mean_difference": self.mean, "interval": list(self.interval),
                "p_value": self.p_value}


def paired(first: Sequence[float], second: Sequence[float]) -> Paired:
    """The paired comparison of two configurations repeated with the same seeds."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"a paired test needs the same seeds on both sides, two at least; "
                         f"got {a.size} and {b.size} values")
    differences = b - a
    mean = float(differences.mean())
    if float(differences.std()) == 0.0:  # the same difference at every seed: no variance
        return Paired(int(a.size), mean, (mean, mean), 1.0 if mean == 0.0 else 0.0)
    result = ttest_rel(b, a)
    found = result.confidence_interval(LEVEL)
    return Paired(int(a.size), mean, (float(found.low), float(found.high)),
                  float(result.pvalue))


def _clip(value: float) -> float:
    """An interval's end inside [0, 1] (float rounding can put Wilson's a hair outside)."""
    return min(1.0, max(0.0, float(value)))
