"""The stop test that once failed on a fresh clone (a SIGTERM during numba's first compile
printed a traceback), 20 times in a row, with numba's cache kept and with it removed before
each run, SIGTERM and SIGINT in turn. Not part of `make test` (it takes about 6 minutes):

    python -m pytest -m loop -s tests/e2e/test_fault_loop.py
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.e2e import test_faults
from tests.support.e2e import copy_project

pytestmark = [pytest.mark.slow, pytest.mark.loop]
RUNS = 20
prepared = test_faults.prepared  # the fixture: a trained project set up for a long training


@pytest.mark.parametrize("cache", ["kept", "removed"])
def test_a_stop_is_clean_20_times_in_a_row(prepared: Path, tmp_path: Path, cache: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    project = copy_project(prepared, tmp_path / "project")
    # numba's compiled loops: in the user's cache (nnlab/models/numpy/kernel_cache.py), here
    # one of this test's own, which the stages inherit
    monkeypatch.setenv("NNLAB_CACHE_DIR", str(tmp_path / "cache"))
    results = []
    for index in range(RUNS):
        shutil.rmtree(project / ".nnlab" / "checkpoints", ignore_errors=True)
        # DVC's note on the lock a SIGTERMed `dvc repro` left (a fresh copy has none).
        (project / ".dvc" / "tmp" / "rwlock").unlink(missing_ok=True)
        if cache == "removed":
            shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        number = signal.SIGTERM if index % 2 == 0 else signal.SIGINT
        began = time.monotonic()
        try:
            test_faults.test_a_stopped_training_is_killed_in_mlflow_and_leaves_nothing(
                project, number)
            results.append("pass")
        except AssertionError as error:
            results.append(f"FAIL {' '.join(str(error).split())[:300]}")
        print(f"numba cache {cache}, run {index + 1}: {signal.Signals(number).name} "
              f"{results[-1]} ({time.monotonic() - began:.1f} s)", flush=True)
    assert results == ["pass"] * RUNS, results


def test_the_store_race_10_rounds_in_a_row(baseline: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test` runs the UI-and-stage race on no store 3 rounds; here, 10."""
    from tests.e2e import test_store_e2e

    monkeypatch.setattr(test_store_e2e, "ROUNDS", 10)
    test_store_e2e.test_the_ui_and_a_stage_started_together_on_no_store_both_work(
        baseline, tmp_path)
