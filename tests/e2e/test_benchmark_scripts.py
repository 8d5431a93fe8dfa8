"""Every script in benchmarks/ runs, in its tiny mode: an API change that breaks one fails
the suite, so each figure in benchmarks/README.md stays reproducible by its own command.

The figures of a tiny run mean nothing; only that the script ran to its end and printed its
table. The scripts that need a trained project (serving, the paired test) use the shared
baseline; those that run a pipeline, a sweep or the team stack are in
test_benchmark_pipelines.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import PIPELINES, TINY, run_tiny
from tests.support.e2e import ROOT

pytestmark = pytest.mark.slow


def test_every_benchmark_script_has_a_tiny_run() -> None:
    scripts = {path.name for path in (ROOT / "benchmarks").glob("*.py")}
    assert scripts == set(TINY), f"give each script a tiny run in tests/support/benchmarks.py: " \
        f"{sorted(scripts ^ set(TINY))}"


@pytest.mark.parametrize("script", sorted(set(TINY) - set(PIPELINES)))
def test_benchmark_runs_in_its_tiny_mode(script: str, request: pytest.FixtureRequest,
                                         tmp_path: Path) -> None:
    needs_project = any("{project}" in argument for argument in TINY[script][0])
    project = request.getfixturevalue("baseline") if needs_project else None
    run_tiny(script, tmp_path / "output.log", project)
