"""benchmarks/paired_test.py's statistics against SciPy's: McNemar's exact test is a two-sided
binomial test on the discordant images, and the Wilson interval is SciPy's `wilson` method."""

from __future__ import annotations

import importlib.util

import pytest
from scipy.stats import binomtest

from tests.support.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "paired_test.py"
spec = importlib.util.spec_from_file_location("paired_test", SCRIPT)
assert spec is not None and spec.loader is not None
paired = importlib.util.module_from_spec(spec)
spec.loader.exec_module(paired)


@pytest.mark.parametrize(("only_first", "only_second"),
                         [(3, 9), (10, 10), (0, 7), (14, 2), (1, 0)])
def test_mcnemar_is_the_two_sided_binomial_test_of_the_discordant_pairs(
        only_first: int, only_second: int) -> None:
    expected = binomtest(only_first, only_first + only_second, 0.5).pvalue
    assert paired.mcnemar_exact(only_first, only_second) == pytest.approx(expected, rel=1e-12)


def test_no_discordant_image_is_no_evidence() -> None:
    assert paired.mcnemar_exact(0, 0) == 1.0


@pytest.mark.parametrize(("right", "total"), [(977, 1000), (983, 1000), (50, 50), (1, 40)])
def test_the_interval_is_wilsons(right: int, total: int) -> None:
    interval = binomtest(right, total).proportion_ci(0.95, method="wilson")
    assert paired.wilson(right, total) == pytest.approx((interval.low, interval.high), abs=1e-6)
