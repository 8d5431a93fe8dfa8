"""The tiny runs of the benchmarks that run a whole pipeline, a sweep or the team stack
(tests/support/benchmarks.py): a file of their own, so that both pytest workers share the
benchmarks' tiny runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import PIPELINES, run_tiny

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script", PIPELINES)
def test_benchmark_runs_in_its_tiny_mode(script: str, tmp_path: Path) -> None:
    run_tiny(script, tmp_path / "output.log")
